"""`python3 -m orchat` behaves exactly like bin/orchat (tests run it under coverage)."""

from orchat.cli import main

raise SystemExit(main())
