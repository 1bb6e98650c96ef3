#!/usr/bin/env bash
# install.sh: install, upgrade (backup, pre-upgrade check, verify, automatic rollback), roll back
# or uninstall ORCHAT from a release. Works offline; `./install.sh --help` lists options and exit codes.
set -euo pipefail
umask 022

readonly EX_USAGE=2 EX_DATAERR=65 EX_UNAVAILABLE=69 EX_SOFTWARE=70 EX_OSERR=71 EX_IOERR=74 EX_TEMPFAIL=75 EX_NOPERM=77 EX_CONFIG=78

usage() {
    cat <<'EOF'
Usage: install.sh [--prefix DIR] [--upgrade | --rollback | --uninstall] [OPTIONS]

Installs ORCHAT from the release this script sits in (an unpacked orchat-VERSION/ directory or a
checkout), or from --tarball FILE / ORCHAT_TARBALL=FILE (so `bash -s < install.sh` works), or
from ORCHAT_RELEASE_URL (fetched with curl and checked against URL.sha256). Nothing else uses
the network. A FILE.sha256 beside a tarball is checked too.

Where it installs:
  as root        /usr/local (bin, lib/orchat, share/man, completions), config from etc/ into /etc
                 (an existing file is never overwritten: the new one lands beside it as FILE.dist),
                 systemd units into /usr/local/lib/systemd/system (/lib/systemd/system for /usr);
                 for /usr (packages) sysusers.d and tmpfiles.d go to /usr/lib, not /etc
  as a user      ~/.local (no /etc files, no units)
  --prefix DIR   DIR; /etc files and units only with --system-files (always with --destdir)

Actions:
  (none)         install; the files of an earlier install are kept aside (see --rollback)
  --upgrade      the operations guide's update procedure, when an install exists: orchat backup
                 create --full, orchat health-check --pre-upgrade (both by the installed version);
                 then install, verify `orchat --version` and `orchat health-check ARGS` (a
                 status no worse than before passes), and roll back on failure
  --rollback     swap the installed version with the one kept aside (and back again)
  --uninstall    remove what was installed; keep /etc/orchat and any etc file you changed

Options:
  --prefix DIR            installation prefix
  --destdir DIR           stage under DIR (distro packaging; no verification, no compile)
  --sysconfdir DIR        where etc/ goes (default /etc)
  --unitdir DIR           where systemd units go
  --logdir DIR            the log directory to create for the orchat user (as root; default
                          /var/log/orchat for a /usr or /usr/local install with /etc)
  --system-files          install etc/ and systemd units    --no-system-files  do not
  --python PATH           interpreter for the bin/ shims (default /usr/bin/python3, else python3)
  --tarball FILE          install from this release tarball
  --health-check-args A   what --upgrade verifies with `orchat health-check` (default
                          "--component=config", which needs no network; "" runs every check)
  --no-backup             --upgrade without `orchat backup create --full` (the pre-upgrade
                          check may then want --force)
  --force                 --upgrade even when the pre-upgrade check says CRITICAL
  --version               print the version this release installs
  -h, --help              this text

Exit codes:
  0  done (and verified)            65 tarball refused (checksum, unsafe member, not a release)
  2  usage, or a path a unit or #! line cannot hold (see README "Install and upgrade")
  69 nothing to install from, no python3 >= 3.9, download failed
  70 verification failed: rolled back to the previous version
  71 a failure AND its rollback failed: see the messages, then run --rollback
  74 a write failed (disk full, read-only); what was written was rolled back; or the backup failed
  75 another install.sh is running (lock DIR/lib/orchat.lock)
  77 the prefix is not writable: run as root, or choose --prefix
  78 the pre-upgrade check said CRITICAL or UNKNOWN: nothing was changed (see --force)
EOF
}

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
    local code=$1
    shift
    say "error: $*"
    exit "$code"
}

# ---------------------------------------------------------------- options
ACTION=install PREFIX="" DESTDIR="" SYSCONFDIR="" UNITDIR="" LOGDIR="" SYSTEM_FILES="" PYTHON=""
TARBALL=${ORCHAT_TARBALL:-} HEALTH_ARGS="--component=config" DO_BACKUP=1 FORCE=0 SHOW_VERSION=0

need_value() { [ $# -ge 2 ] || die "$EX_USAGE" "$1 needs a value (see --help)"; }

parse_options() {
    while [ $# -gt 0 ]; do
        case $1 in
            --upgrade) ACTION=upgrade ;;
            --rollback) ACTION=rollback ;;
            --uninstall) ACTION=uninstall ;;
            --prefix | --destdir | --sysconfdir | --unitdir | --logdir | --python | --tarball | --health-check-args)
                need_value "$@"
                case $1 in
                    --prefix) PREFIX=$2 ;;
                    --destdir) DESTDIR=$2 ;;
                    --sysconfdir) SYSCONFDIR=$2 ;;
                    --unitdir) UNITDIR=$2 ;;
                    --logdir) LOGDIR=$2 ;;
                    --python) PYTHON=$2 ;;
                    --tarball) TARBALL=$2 ;;
                    *) HEALTH_ARGS=$2 ;;
                esac
                shift
                ;;
            --prefix=* | --destdir=* | --sysconfdir=* | --unitdir=* | --logdir=* | --python=* | --tarball=* | --health-check-args=*)
                local name=${1%%=*}
                parse_options "$name" "${1#*=}"
                ;;
            --system-files) SYSTEM_FILES=1 ;;
            --no-system-files) SYSTEM_FILES=0 ;;
            --no-backup) DO_BACKUP=0 ;;
            --force) FORCE=1 ;;
            --version) SHOW_VERSION=1 ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "$EX_USAGE" "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
}

# A newline or other control character in a path would end a line of the INSTALLED manifest
# (and --uninstall removes what that manifest lists) or of a unit file: refused, exit 2.
refuse_control_characters() {
    case $2 in
        *[[:cntrl:]]*) die "$EX_USAGE" "$1 must not contain control characters (newline, tab, ...)" ;;
    esac
}

# systemd expands $VAR in arguments but not in the program's own path, and refuses a program path
# holding \ " or ' ("Executable name contains special characters"): no quoting makes those work.
refuse_unit_unsafe() {
    case $2 in
        *[\$\\\"\']*) die "$EX_USAGE" "$1 $2: systemd units cannot run a program whose path holds \$, \\, \" or '; choose another $1 (or --no-system-files)" ;;
    esac
}

resolve_layout() {
    local uid
    uid=$(id -u)
    DESTDIR=${DESTDIR%/}
    if [ -n "$DESTDIR" ] && [ "$ACTION" != install ] && [ "$ACTION" != uninstall ]; then
        die "$EX_USAGE" "--destdir only stages an install (or uninstalls one): it cannot --$ACTION"
    fi
    if [ -z "$PREFIX" ]; then
        if [ "$uid" = 0 ]; then
            PREFIX=/usr/local
        else
            [ -n "${HOME:-}" ] || die "$EX_USAGE" "HOME is not set: pass --prefix DIR"
            PREFIX=$HOME/.local
        fi
    fi
    case $PREFIX in
        /*) ;;
        *) PREFIX=$(pwd)/$PREFIX ;;
    esac
    PREFIX=${PREFIX%/}
    [ -n "$PREFIX" ] || PREFIX=/
    if [ -z "$SYSTEM_FILES" ]; then
        SYSTEM_FILES=0
        if [ -n "$DESTDIR" ]; then
            SYSTEM_FILES=1
        elif [ "$uid" = 0 ] && { [ "$PREFIX" = /usr ] || [ "$PREFIX" = /usr/local ]; }; then
            SYSTEM_FILES=1
        fi
    fi
    [ -n "$SYSCONFDIR" ] || SYSCONFDIR=/etc
    # Only a real system install creates /var/log/orchat; a staged or test layout names its own.
    if [ -z "$LOGDIR" ] && [ "$SYSCONFDIR" = /etc ] && { [ "$PREFIX" = /usr ] || [ "$PREFIX" = /usr/local ]; }; then
        LOGDIR=/var/log/orchat
    fi
    if [ -z "$UNITDIR" ]; then
        # Debian's systemd looks in /lib/systemd/system and /usr/local/lib/systemd/system.
        if [ "$PREFIX" = /usr ]; then UNITDIR=/lib/systemd/system; else UNITDIR=$PREFIX/lib/systemd/system; fi
    fi
    # sysusers.d(5), tmpfiles.d(5): a distribution's file (PREFIX /usr: the .deb and .rpm are this
    # install) lives in /usr/lib/*.d and an admin's file of the same name in /etc/*.d overrides it
    # (lintian: misplaced-systemd-tmpfiles); any other install is the admin's own, in SYSCONFDIR.
    VENDORDIR=""
    if [ "$PREFIX" = /usr ]; then VENDORDIR=/usr/lib; fi
    SYSUSERS_CONF=${VENDORDIR:-$SYSCONFDIR}/sysusers.d/orchat.conf
    refuse_control_characters --prefix "$PREFIX"
    refuse_control_characters --destdir "$DESTDIR"
    refuse_control_characters --sysconfdir "$SYSCONFDIR"
    refuse_control_characters --unitdir "$UNITDIR"
    if [ "$SYSTEM_FILES" = 1 ]; then
        refuse_unit_unsafe --prefix "$PREFIX"
        refuse_unit_unsafe --sysconfdir "$SYSCONFDIR"
    fi
    BINDIR=$PREFIX/bin
    LIBDIR=$PREFIX/lib/orchat
    MANDIR=$PREFIX/share/man
    EXAMPLEDIR=$PREFIX/share/doc/orchat/examples
    BASHCOMPDIR=$PREFIX/share/bash-completion/completions
    ZSHCOMPDIR=$PREFIX/share/zsh/site-functions
    ROOT=$DESTDIR
    MANIFEST=$LIBDIR/INSTALLED
    STASH=$ROOT$LIBDIR.previous.new
    PREVIOUS=$ROOT$LIBDIR.previous
    LOCK=$ROOT$LIBDIR.lock
}

# ---------------------------------------------------------------- the release to install from
WORK=""
SRC=""
VERSION=""

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        "${PYTHON:-python3}" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

work_dir() {
    [ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/orchat-install.XXXXXX")
}

download_release() {
    local url=$ORCHAT_RELEASE_URL
    command -v curl >/dev/null 2>&1 || die "$EX_UNAVAILABLE" "curl is needed to fetch $url (or set ORCHAT_TARBALL=FILE)"
    work_dir
    TARBALL=$WORK/${url##*/}
    say "fetching $url"
    curl -fsSL -o "$TARBALL" "$url" || die "$EX_UNAVAILABLE" "could not fetch $url"
    curl -fsSL -o "$TARBALL.sha256" "$url.sha256" || die "$EX_UNAVAILABLE" "could not fetch $url.sha256 (a download is only installed when its checksum matches)"
}

unpack_tarball() {
    local file=$1 expected="" actual top listing
    [ -f "$file" ] || die "$EX_UNAVAILABLE" "no such tarball: $file"
    if [ -n "${ORCHAT_TARBALL_SHA256:-}" ]; then
        expected=$ORCHAT_TARBALL_SHA256
    elif [ -f "$file.sha256" ]; then
        expected=$(cut -d' ' -f1 <"$file.sha256")
    fi
    if [ -n "$expected" ]; then
        actual=$(sha256_of "$file")
        [ "$actual" = "$expected" ] || die "$EX_DATAERR" "checksum mismatch for $file: expected $expected, got $actual"
        say "checksum ok: $file"
    else
        say "warning: no $file.sha256 beside the tarball: its checksum was not checked"
    fi
    work_dir
    listing=$WORK/listing
    tar -tvzf "$file" >"$listing" 2>/dev/null || die "$EX_DATAERR" "$file is not a gzip-compressed tar archive"
    # Only plain files and directories, all inside one orchat-VERSION/ directory, no .. parts.
    if grep -qv '^[-d]' "$listing"; then
        die "$EX_DATAERR" "$file holds links, devices or other special members: refused"
    fi
    tar -tzf "$file" >"$listing"
    top=$(head -n 1 "$listing")
    top=${top%%/*}
    case $top in
        orchat-[0-9]*) ;;
        *) die "$EX_DATAERR" "$file is not an ORCHAT release (its top directory is '$top', not orchat-VERSION)" ;;
    esac
    if awk -v top="$top" 'index($0, top "/") != 1 && $0 != top && $0 != top "/"' "$listing" | grep -q . || grep -qE '(^|/)\.\.(/|$)' "$listing"; then
        die "$EX_DATAERR" "$file has members outside $top/: refused"
    fi
    mkdir "$WORK/src"
    tar -xzf "$file" -C "$WORK/src" --no-same-owner || die "$EX_DATAERR" "could not unpack $file"
    SRC=$WORK/src/$top
}

resolve_source() {
    local here=""
    if [ -n "${BASH_SOURCE[0]:-}" ] && [ -f "${BASH_SOURCE[0]}" ]; then
        here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    fi
    if [ -n "$TARBALL" ]; then
        unpack_tarball "$TARBALL"
    elif [ -n "$here" ] && [ -f "$here/orchat/__init__.py" ]; then
        SRC=$here
    elif [ -n "${ORCHAT_RELEASE_URL:-}" ]; then
        download_release
        unpack_tarball "$TARBALL"
    else
        die "$EX_UNAVAILABLE" "nothing to install from: run ./install.sh inside an unpacked orchat-VERSION/ directory, or set ORCHAT_TARBALL=/path/orchat-VERSION.tar.gz (or ORCHAT_RELEASE_URL=https://.../orchat-VERSION.tar.gz)"
    fi
    # The one source of truth for the version: orchat/__init__.py (the Makefile and --version read it too).
    VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$SRC/orchat/__init__.py" 2>/dev/null || true)
    [ -n "$VERSION" ] || die "$EX_DATAERR" "$SRC is not an ORCHAT release: no __version__ in orchat/__init__.py"
    local needed
    for needed in bin/orchat docs/orchat.1 docs/completions/orchat.bash docs/completions/_orchat; do
        [ -f "$SRC/$needed" ] || die "$EX_DATAERR" "$SRC is not a complete ORCHAT release: $needed is missing"
    done
}

find_python() {
    if [ -z "$PYTHON" ]; then
        if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=$(command -v python3 || true); fi
    fi
    case $PYTHON in
        # The kernel ends a #! interpreter path at the first blank.
        *[[:space:][:cntrl:]]*) die "$EX_USAGE" "--python $PYTHON: a #! line cannot hold a path with blanks; use a symlink without them" ;;
    esac
    if [ -z "$PYTHON" ] || [ ! -x "$PYTHON" ]; then
        die "$EX_UNAVAILABLE" "python3 not found: ORCHAT needs Python >= 3.9 (pass --python PATH)"
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null ||
        die "$EX_UNAVAILABLE" "$PYTHON is older than Python 3.9, which ORCHAT needs (pass --python PATH)"
}

# ---------------------------------------------------------------- lock and transaction
LOCKED=0 TXN=0 COMMITTED=0
CREATED_DIRS=()

take_lock() {
    ensure_dir "$PREFIX/lib"
    if ! mkdir "$LOCK" 2>/dev/null; then
        [ -w "$ROOT$PREFIX/lib" ] || die "$EX_NOPERM" "cannot write $ROOT$PREFIX: run as root for a system-wide install, or choose --prefix DIR"
        local holder
        holder=$(cat "$LOCK/pid" 2>/dev/null || true)
        # A killed install.sh leaves its lock behind: take it over when its process is gone.
        if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
            say "taking over the lock of install.sh $holder, which is no longer running"
            rm -rf "$LOCK"
        fi
        mkdir "$LOCK" 2>/dev/null || die "$EX_TEMPFAIL" "another install.sh is running (lock $LOCK, pid ${holder:-?})"
    fi
    LOCKED=1
    echo $$ >"$LOCK/pid"
}

# ensure_dir PATH: create PATH (under ROOT) and its missing parents, remembered for the manifest and rollback.
ensure_dir() {
    local dir=$1 missing=() created
    while [ ! -d "$ROOT$dir" ] && [ "$dir" != / ] && [ "$dir" != . ]; do
        missing=("$dir" "${missing[@]+"${missing[@]}"}")
        dir=${dir%/*}
        [ -n "$dir" ] || dir=/
    done
    for created in "${missing[@]+"${missing[@]}"}"; do
        if ! mkdir "$ROOT$created" 2>/dev/null; then
            [ -d "$ROOT$created" ] && continue
            [ -w "$ROOT${created%/*}" ] || die "$EX_NOPERM" "cannot create $ROOT$created: run as root for a system-wide install, or choose --prefix DIR"
            die "$EX_IOERR" "cannot create $ROOT$created"
        fi
        CREATED_DIRS+=("$created")
        if [ "$TXN" = 1 ]; then printf 'd %s\n' "$created" >>"$STASH/journal"; fi
    done
}

begin_transaction() {
    if [ -e "$STASH" ]; then
        die "$EX_TEMPFAIL" "an interrupted install left $STASH: run install.sh --rollback to put the previous version back"
    fi
    mkdir -p "$STASH/root"
    : >"$STASH/journal"
    TXN=1
}

# stash PATH: move the existing file PATH (under ROOT) into the transaction's stash, once.
stash() {
    local path=$1
    if [ -e "$ROOT$path" ] || [ -L "$ROOT$path" ]; then
        if [ ! -e "$STASH/root$path" ]; then
            mkdir -p "$(dirname "$STASH/root$path")"
            mv "$ROOT$path" "$STASH/root$path"
        else
            rm -rf -- "$ROOT$path"
        fi
    fi
}

# Put the stashed files back and remove what this transaction wrote; return non-zero if that failed.
rollback_transaction() {
    local kind path status=0
    [ -d "$STASH" ] || return 0
    if [ -f "$STASH/journal" ]; then
        while read -r kind path; do
            case $kind in
                f) rm -f -- "$ROOT$path" || status=1 ;;
                tree) rm -rf -- "$ROOT$path" || status=1 ;;
            esac
        done < <(tac "$STASH/journal")
    fi
    while IFS= read -r -d '' path; do
        path=${path#"$STASH/root"}
        mkdir -p "$(dirname "$ROOT$path")" && mv -f "$STASH/root$path" "$ROOT$path" || status=1
    done < <(find "$STASH/root" \( -type f -o -type l \) -print0)
    if [ -f "$STASH/journal" ]; then
        while read -r kind path; do
            if [ "$kind" = d ]; then rmdir "$ROOT$path" 2>/dev/null || true; fi
        done < <(tac "$STASH/journal")
    fi
    [ "$status" = 0 ] && rm -rf "$STASH"
    TXN=0
    return "$status"
}

commit_transaction() {
    rm -f "$STASH/journal"
    rm -rf "$PREVIOUS"
    if [ -n "$(find "$STASH/root" \( -type f -o -type l \) -print -quit)" ]; then
        mv "$STASH" "$PREVIOUS"
    else
        rm -rf "$STASH"
    fi
    TXN=0
    COMMITTED=1
}

on_exit() {
    local code=$1
    trap - EXIT
    if [ "$TXN" = 1 ]; then
        say "rolling back: restoring the files of the previous install"
        if rollback_transaction; then
            say "rolled back"
            [ "$code" = 0 ] || [ "$code" -ge 64 ] || code=$EX_IOERR
        else
            say "error: the rollback failed too: files are in $STASH; run install.sh --rollback"
            code=$EX_OSERR
        fi
    fi
    if [ "$LOCKED" = 1 ]; then rm -rf "$LOCK"; fi
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
    if [ "$COMMITTED" = 0 ]; then
        local i
        for ((i = ${#CREATED_DIRS[@]} - 1; i >= 0; i--)); do
            rmdir "$ROOT${CREATED_DIRS[i]}" 2>/dev/null || true
        done
    fi
    exit "$code"
}

# ---------------------------------------------------------------- writing files
# record KIND PATH: PATH goes in the new manifest (f file, c config kept on uninstall, e etc file).
record() {
    printf '%s\t%s\n' "$1" "$2" >>"$WORK/recorded"
}

# put_file SRC DEST MODE: install SRC as DEST (a program file: the old one is stashed first).
put_file() {
    local src=$1 dest=$2 mode=$3
    ensure_dir "${dest%/*}"
    stash "$dest"
    printf 'f %s\n' "$dest" >>"$STASH/journal"
    install -m "$mode" "$src" "$ROOT$dest" || die "$EX_IOERR" "could not write $ROOT$dest"
    record f "$dest"
}

# put_config SRC DEST MODE: install an etc file unless one is there; a different one gets DEST.dist beside it.
put_config() {
    local src=$1 dest=$2 mode=$3 kind=e
    case $dest in "$SYSCONFDIR"/orchat/*) kind=c ;; esac
    if [ -e "$ROOT$dest" ]; then
        if cmp -s "$src" "$ROOT$dest"; then
            record "$kind" "$dest"
        else
            put_file "$src" "$dest.dist" "$mode"
            say "kept your $dest; the new version's is $dest.dist"
        fi
        return 0
    fi
    ensure_dir "${dest%/*}"
    printf 'f %s\n' "$dest" >>"$STASH/journal"
    install -m "$mode" "$src" "$ROOT$dest" || die "$EX_IOERR" "could not write $ROOT$dest"
    record "$kind" "$dest"
}

# render_unit SRC DEST: SRC with @BINDIR@, @LIBDIR@, @SYSCONFDIR@ and @PREFIX@ filled in. They sit
# in command lines (ExecStart=@BINDIR@/orchatd), so a path with anything but [A-Za-z0-9/._+-] is
# written quoted per systemd.syntax(7), "...", with % doubled (specifiers); systemd joins the quoted
# part with the rest of the word. $ \ " ' never get here (refuse_unit_unsafe).
render_unit() {
    sed -e "s|@BINDIR@|$(sed_replacement "$(unit_word "$BINDIR")")|g" \
        -e "s|@LIBDIR@|$(sed_replacement "$(unit_word "$LIBDIR")")|g" \
        -e "s|@SYSCONFDIR@|$(sed_replacement "$(unit_word "$SYSCONFDIR")")|g" \
        -e "s|@PREFIX@|$(sed_replacement "$(unit_word "$PREFIX")")|g" "$1" >"$2"
}

unit_word() {
    local word=$1
    case $word in
        *[!A-Za-z0-9/._+-]*) ;;
        *) printf '%s' "$word" && return ;;
    esac
    printf '"%s"' "${word//%/%%}"
}

# sed_replacement TEXT: TEXT escaped for the right-hand side of s|...|...| (\, & and |).
sed_replacement() {
    local text=$1 amp='\&' bar='\|'
    text=${text//\\/\\\\}
    # Quoted, so bash 5.2's patsub_replacement does not read & as "the match".
    text=${text//&/"$amp"}
    text=${text//|/"$bar"}
    printf '%s' "$text"
}

stash_installed() {
    local kind sum path
    if [ -f "$ROOT$MANIFEST" ]; then
        while IFS=$'\t' read -r kind sum path; do
            case $kind in
                f) case $path in "$LIBDIR"/*) ;; *) stash "$path" ;; esac ;;
                d | c | e) if [ -e "$ROOT$path" ]; then printf '%s\t%s\t%s\n' "$kind" "$sum" "$path" >>"$WORK/carried"; fi ;;
            esac
        done < <(grep -v '^#' "$ROOT$MANIFEST")
    fi
    stash "$LIBDIR"
}

install_package() {
    local rel
    ensure_dir "$LIBDIR"
    printf 'tree %s\n' "$LIBDIR" >>"$STASH/journal"
    # One tar pipe rather than a copy per file: process start-up is most of an install's time.
    (cd "$SRC" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' orchat) | (cd "$ROOT$LIBDIR" && tar -xf - --no-same-owner) ||
        die "$EX_IOERR" "could not write $ROOT$LIBDIR"
    chmod -R u=rwX,go=rX "$ROOT$LIBDIR/orchat"
    while IFS= read -r -d '' rel; do
        record f "$LIBDIR/${rel#./}"
    done < <(cd "$ROOT$LIBDIR" && find ./orchat -type f -print0 | sort -z)
}

write_manifest() {
    local kinds=() files=() sums=() kind path dir i
    while IFS=$'\t' read -r kind path; do
        kinds+=("$kind")
        files+=("$ROOT$path")
    done <"$WORK/recorded"
    mapfile -t sums < <(sha256sum -- "${files[@]}" | cut -d' ' -f1)
    {
        printf '# orchat %s, installed by install.sh: kind (f file, c config kept by --uninstall, e etc file removed when unchanged, d directory), sha256, path\n' "$VERSION"
        for i in "${!kinds[@]}"; do
            printf '%s\t%s\t%s\n' "${kinds[i]}" "${sums[i]}" "${files[i]#"$ROOT"}"
        done
        for dir in "${CREATED_DIRS[@]+"${CREATED_DIRS[@]}"}"; do
            printf 'd\t-\t%s\n' "$dir"
        done
    } >"$WORK/manifest"
    # Directories and config recorded by the earlier install stay known to --uninstall.
    cut -f3 "$WORK/manifest" >"$WORK/paths"
    sort -u "$WORK/carried" | while IFS=$'\t' read -r kind sum path; do
        grep -qxF -- "$path" "$WORK/paths" || printf '%s\t%s\t%s\n' "$kind" "$sum" "$path"
    done >>"$WORK/manifest"
    printf 'f %s\n' "$MANIFEST" >>"$STASH/journal"
    cp "$WORK/manifest" "$ROOT$MANIFEST" || die "$EX_IOERR" "could not write $ROOT$MANIFEST"
}

install_files() {
    local rel file name mode
    work_dir
    : >"$WORK/carried"
    : >"$WORK/recorded"
    stash_installed
    install_package
    for file in "$SRC"/bin/*; do
        [ -f "$file" ] || continue
        name=${file##*/}
        if [ "$PYTHON" != /usr/bin/python3 ] && head -n 1 "$file" | grep -q '^#!/usr/bin/python3'; then
            sed "1s|^#!/usr/bin/python3|#!$(sed_replacement "$PYTHON")|" "$file" >"$WORK/shim"
            put_file "$WORK/shim" "$BINDIR/$name" 755
        else
            put_file "$file" "$BINDIR/$name" 755
        fi
    done
    put_file "$SRC/docs/orchat.1" "$MANDIR/man1/orchat.1" 644
    put_file "$SRC/docs/completions/orchat.bash" "$BASHCOMPDIR/orchat" 644
    put_file "$SRC/docs/completions/_orchat" "$ZSHCOMPDIR/_orchat" 644
    if [ "$SYSTEM_FILES" = 1 ]; then
        if [ -d "$SRC/etc" ]; then
            while IFS= read -r -d '' rel; do
                rel=${rel#./}
                mode=644
                if [ -x "$SRC/etc/$rel" ]; then mode=755; fi
                case $rel in
                    # Other software's config (a balancer, keepalived, Prometheus, journald for the
                    # whole host): shipped as examples to copy on purpose, never dropped into /etc.
                    haproxy/* | keepalived/* | nginx/* | prometheus/* | systemd/*)
                        put_file "$SRC/etc/$rel" "$EXAMPLEDIR/etc/$rel" 644 ;;
                    sysusers.d/* | tmpfiles.d/*)
                        if [ -n "$VENDORDIR" ]; then
                            put_file "$SRC/etc/$rel" "$VENDORDIR/$rel" 644
                        else
                            put_config "$SRC/etc/$rel" "$SYSCONFDIR/$rel" "$mode"
                        fi
                        ;;
                    *) put_config "$SRC/etc/$rel" "$SYSCONFDIR/$rel" "$mode" ;;
                esac
            done < <(cd "$SRC/etc" && find . -type f -print0 | sort -z)
        fi
        for file in "$SRC"/systemd/*.service "$SRC"/systemd/*.timer "$SRC"/systemd/*.socket "$SRC"/systemd/*.path; do
            [ -f "$file" ] || continue
            render_unit "$file" "$WORK/unit"
            put_file "$WORK/unit" "$UNITDIR/${file##*/}" 644
        done
    fi
    if [ "$SYSTEM_FILES" = 1 ] && [ -z "$ROOT" ] && [ "$(id -u)" = 0 ]; then
        # The units run as the `orchat` user and read the key from /etc/orchat/credentials.
        ensure_dir "$SYSCONFDIR/orchat/credentials"
        chmod 700 "$SYSCONFDIR/orchat/credentials" 2>/dev/null || true
        if command -v systemd-sysusers >/dev/null 2>&1 && [ -f "$SYSUSERS_CONF" ]; then
            systemd-sysusers "$SYSUSERS_CONF" >/dev/null 2>&1 || say "warning: systemd-sysusers could not create the orchat user"
        fi
        [ -z "$LOGDIR" ] || create_log_dir
    fi
    if [ -z "$ROOT" ]; then
        # Compiled now, as root may own the tree: users' runs could not write __pycache__ themselves.
        "$PYTHON" -m compileall -q -d "$LIBDIR" "$LIBDIR" >/dev/null 2>&1 || say "warning: could not byte-compile $LIBDIR"
    fi
    write_manifest
}

# The log directory, owned and moded as etc/tmpfiles.d/orchat.conf and the units' LogsDirectory=
# say (tests/static/test_daemon_files.py keeps the three equal): orchat:orchat 0751, so the daemon
# and logrotate (`su orchat orchat`) own it and users can reach audit.log.d/ inside, where each
# user appends to USER.log (setgid orchat, sticky: no one renames or deletes another's file).
# `install -d` also repairs a directory an earlier root run made root:root 0750. Logs are data:
# not in the manifest, kept by --uninstall.
create_log_dir() {
    if ! id orchat >/dev/null 2>&1; then
        say "warning: no orchat user (systemd-sysusers $SYSUSERS_CONF): $LOGDIR not created"
        return 0
    fi
    install -d -o orchat -g orchat -m 0751 "$LOGDIR" || die "$EX_IOERR" "could not create $LOGDIR"
    install -d -o orchat -g orchat -m 3773 "$LOGDIR/audit.log.d" || die "$EX_IOERR" "could not create $LOGDIR/audit.log.d"
}

# ---------------------------------------------------------------- running orchat
# registered NAME ORCHAT...: is subcommand NAME listed in ORCHAT's --help (the COMMANDS registry)?
registered() {
    local name=$1 help
    shift
    help=$("$@" --help 2>/dev/null) || return 1
    case $help in *"  orchat $name "*) return 0 ;; esac
    return 1
}

installed_orchat() {
    [ -z "$ROOT" ] && [ -x "$BINDIR/orchat" ] && [ -f "$ROOT$LIBDIR/orchat/__init__.py" ]
}

health_rc() {
    local rc=0
    # shellcheck disable=SC2086 # HEALTH_ARGS is a list of words by design
    "$@" health-check $HEALTH_ARGS >&2 || rc=$?
    echo "$rc"
}

verify_install() {
    local out baseline=$1 rc
    out=$("$BINDIR/orchat" --version 2>&1) || {
        say "verify: $BINDIR/orchat --version failed: $out"
        return 1
    }
    if [ "$out" != "orchat $VERSION" ]; then
        say "verify: $BINDIR/orchat --version says '$out', expected 'orchat $VERSION'"
        return 1
    fi
    say "verify: $out"
    [ "$ACTION" = upgrade ] || return 0
    if ! registered health-check "$BINDIR/orchat"; then
        say "verify: this version has no health-check command: only --version was verified"
        return 0
    fi
    rc=$(health_rc "$BINDIR/orchat")
    # WARNING passes; so does a status no worse than before the upgrade (e.g. no key configured yet).
    if [ "$rc" -le 1 ] || [ "$rc" = "$baseline" ]; then
        say "verify: orchat health-check $HEALTH_ARGS exited $rc"
        return 0
    fi
    say "verify: orchat health-check $HEALTH_ARGS exited $rc (before the upgrade: ${baseline:-not run})"
    return 1
}

pre_upgrade() {
    local rc=0
    if installed_orchat && [ "$DO_BACKUP" = 1 ]; then
        if registered backup "$BINDIR/orchat"; then
            say "step 1/5: orchat backup create --full"
            "$BINDIR/orchat" backup create --full >&2 || die "$EX_IOERR" "orchat backup create --full failed: nothing was changed (--no-backup skips it)"
        else
            say "step 1/5: the installed orchat has no backup command: skipped"
        fi
    else
        say "step 1/5: backup skipped ($([ "$DO_BACKUP" = 1 ] && echo 'no existing install' || echo '--no-backup'))"
    fi
    # The guide runs the check with the installed version: it knows its own data and paths.
    if installed_orchat && registered health-check "$BINDIR/orchat"; then
        say "step 2/5: orchat health-check --pre-upgrade"
        "$BINDIR/orchat" health-check --pre-upgrade >&2 || rc=$?
        if [ "$rc" -ge 2 ]; then
            [ "$FORCE" = 1 ] || die "$EX_CONFIG" "pre-upgrade check exited $rc: nothing was changed (fix it, or pass --force)"
            say "warning: pre-upgrade check exited $rc; going on because of --force"
        fi
    else
        say "step 2/5: pre-upgrade check skipped ($(installed_orchat && echo 'the installed orchat has no health-check' || echo 'no existing install'))"
    fi
    BASELINE=""
    if installed_orchat && registered health-check "$BINDIR/orchat"; then
        BASELINE=$(health_rc "$BINDIR/orchat")
    fi
}

# A user-mode install makes ~/.config/orchat (0700: the key lives there), so the guide's disaster
# recovery (`cp -r ~/backup/orchat/config-latest/* ~/.config/orchat/`) has somewhere to copy to.
# It is the user's config, not an installed file: not in the manifest, kept by --uninstall.
create_user_config_dir() {
    local base=${XDG_CONFIG_HOME:-}
    [ -z "$ROOT" ] && [ "$(id -u)" != 0 ] && [ -n "${HOME:-}" ] || return 0
    case $base in /*) ;; *) base=$HOME/.config ;; esac
    [ -d "$base/orchat" ] && return 0
    if mkdir -p "$base" && mkdir -m 700 "$base/orchat"; then
        say "created $base/orchat (mode 0700) for your config"
    else
        say "warning: could not create $base/orchat"
    fi
}

# ---------------------------------------------------------------- actions
do_install() {
    local baseline=""
    resolve_source
    find_python
    if [ -n "$ROOT" ]; then mkdir -p "$ROOT"; fi
    take_lock
    if [ "$ACTION" = upgrade ]; then
        pre_upgrade
        baseline=$BASELINE
        say "step 3/5: installing orchat $VERSION into $PREFIX"
    fi
    begin_transaction
    install_files
    if [ -z "$ROOT" ]; then
        if [ "$ACTION" = upgrade ]; then say "step 4/5: verifying"; fi
        if ! verify_install "$baseline"; then
            say "verification failed: rolling back"
            if rollback_transaction; then
                say "step 5/5: rolled back to the previous version"
                exit "$EX_SOFTWARE"
            fi
            exit "$EX_OSERR"
        fi
    fi
    commit_transaction
    create_user_config_dir
    if [ "$ACTION" = upgrade ]; then
        say "step 5/5: no rollback needed (the previous version is kept in $PREVIOUS; install.sh --rollback swaps it back)"
    fi
    echo "orchat $VERSION installed in $ROOT$PREFIX"
    if [ -z "$ROOT" ]; then
        case ":$PATH:" in *":$BINDIR:"*) ;; *) say "note: $BINDIR is not in PATH" ;; esac
        [ "$SYSTEM_FILES" = 1 ] || say "note: no /etc files or systemd units installed (as root, or with --system-files)"
    fi
}

do_rollback() {
    local path
    find_python
    if [ -e "$STASH" ]; then
        take_lock
        TXN=1
        rollback_transaction || die "$EX_OSERR" "could not restore from $STASH"
        echo "restored the install interrupted in $ROOT$PREFIX"
        return 0
    fi
    [ -d "$PREVIOUS/root" ] || die "$EX_USAGE" "no previous version kept in $PREVIOUS"
    take_lock
    begin_transaction
    work_dir
    : >"$WORK/carried"
    stash_installed
    while IFS= read -r -d '' path; do
        path=${path#"$PREVIOUS/root"}
        ensure_dir "${path%/*}"
        printf 'f %s\n' "$path" >>"$STASH/journal"
        # Copied, not moved: if this fails, the kept version must still be there.
        cp -pP "$PREVIOUS/root$path" "$ROOT$path" || die "$EX_IOERR" "could not restore $path"
    done < <(find "$PREVIOUS/root" \( -type f -o -type l \) -print0)
    VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT$LIBDIR/orchat/__init__.py" 2>/dev/null || true)
    if [ -z "$ROOT" ] && ! verify_install ""; then
        rollback_transaction || exit "$EX_OSERR"
        exit "$EX_SOFTWARE"
    fi
    commit_transaction
    echo "orchat ${VERSION:-?} restored in $ROOT$PREFIX (install.sh --rollback again swaps back)"
}

do_uninstall() {
    local kind sum path kept=0
    if [ ! -f "$ROOT$MANIFEST" ]; then
        echo "nothing installed in $ROOT$PREFIX (no $ROOT$MANIFEST)"
        return 0
    fi
    take_lock
    work_dir
    while IFS=$'\t' read -r kind sum path; do
        case $kind in
            f) rm -f -- "$ROOT$path" ;;
            e)
                if [ -f "$ROOT$path" ] && [ "$(sha256_of "$ROOT$path")" = "$sum" ]; then
                    rm -f -- "$ROOT$path"
                elif [ -e "$ROOT$path" ]; then
                    say "kept $path: you changed it"
                    kept=$((kept + 1))
                fi
                ;;
            c) if [ -e "$ROOT$path" ]; then kept=$((kept + 1)); fi ;;
            d) printf '%s\n' "$path" >>"$WORK/dirs" ;;
        esac
    done < <(grep -v '^#' "$ROOT$MANIFEST")
    rm -rf -- "$ROOT$LIBDIR" "$PREVIOUS" "$STASH" "$LOCK"
    LOCKED=0
    COMMITTED=1
    if [ -f "$WORK/dirs" ]; then
        # Deepest first; a directory that holds anything else (your config) stays.
        sort -r "$WORK/dirs" | while IFS= read -r path; do rmdir "$ROOT$path" 2>/dev/null || true; done
    fi
    echo "orchat removed from $ROOT$PREFIX ($kept config file(s) kept under $ROOT$SYSCONFDIR)"
}

main() {
    parse_options "$@"
    resolve_layout
    trap 'on_exit $?' EXIT
    if [ "$SHOW_VERSION" = 1 ]; then
        resolve_source
        echo "$VERSION"
        exit 0
    fi
    case $ACTION in
        install | upgrade) do_install ;;
        rollback) do_rollback ;;
        uninstall) do_uninstall ;;
    esac
}

main "$@"
