"""The fast chat-argument parser must agree with argparse on everything it accepts."""

from __future__ import annotations

import pytest

from orchat.args import build_parser, parse_chat_args

AGREEING = [
    ["hello"],
    ["what", "is", "up?"],
    ["-m", "a/b", "-s", "@f", "--temperature", "0.5", "--max-tokens", "9", "q"],
    ["--model=a/b", "--temperature=1", "q"],
    ["-c", "-u", "--json", "--no-stream", "--reasoning", "--no-history", "q"],
    ["-i"],
    ["-e", "--print", "show", "disk", "usage"],
    ["--exec", "q"],
    ["--explain", "tar -xzf a.tgz"],
    ["-x", "nginx", "block"],
    ["--code", "q"],
    ["--provider", "A,B", "--only=C", "--ignore", "D", "--sort", "price", "--max-price", "1,2", "q"],
    ["--no-fallbacks", "--deny-data-collection", "--zdr", "q"],
    ["-p", "local", "--effort", "high", "--no-reasoning", "--schema", "s.json", "--json-object", "q"],
    ["--profile=x", "--reasoning-tokens", "9", "q"],
    ["--raw", "q"],
    ["--editor", "start", "of", "it"],
    ["-S", "incident-42", "--session=db.1", "q"],
    ["--", "-m", "is", "a", "word"],
    ["-"],
    ["-r", "logs", "--role=review", "-f", "a.conf", "--file", "logs/", "--file=b", "q"],
    [],
]


@pytest.mark.parametrize("args", AGREEING)
def test_fast_parser_matches_argparse(args: list[str]) -> None:
    fast = parse_chat_args(args)
    assert fast is not None
    assert vars(fast) == vars(build_parser().parse_args(args))


@pytest.mark.parametrize(
    "args",
    [["--help"], ["-h"], ["--bogus"], ["-cu", "x"], ["-ex", "x"], ["--temperature", "hot"], ["-m"], ["--json=1"], ["--sort", "cheap"], ["--max-price", "1,x"]],
)
def test_fast_parser_defers_unusual_input_to_argparse(args: list[str]) -> None:
    assert parse_chat_args(args) is None
