"""rewrite_model_list: the same envelope json.loads + json.dumps gave, one model at a time."""

from __future__ import annotations

import json

import pytest

from orchat.gateway.modellist import NoModelList, rewrite_model_list


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [{"id": "a/b"}, {"id": "c", "owned_by": "me", "created": 5}], "next": null}',
        b' \n[ {"id": "a/b"} , "odd" , 3 ]\n',
        b'{"meta": {"deep": [1, {"x": "data"}]}, "data": []}',
        b'{"data":[]}',
    ],
)
def test_rewrite_model_list_matches_a_whole_parse(body: bytes) -> None:
    data = json.loads(body)
    items = data["data"] if isinstance(data, dict) else data
    for item in items:
        if isinstance(item, dict):
            item.setdefault("object", "model")
            item.setdefault("owned_by", str(item.get("id", "")).split("/")[0] or "openrouter")
            item.setdefault("created", 0)
    assert json.loads(rewrite_model_list(body)) == {"object": "list", "data": items}


@pytest.mark.parametrize("body", [b'{"data": 3}', b'{"models": []}', b"{}"])
def test_json_without_a_model_list_is_no_model_list(body: bytes) -> None:
    with pytest.raises(NoModelList):
        rewrite_model_list(body)


@pytest.mark.parametrize("body", [b"<html>", b"", b'{"data": [{"id": 1}', b'[{"id": 1} {"id": 2}]', b'{"data" [1]}', b"[" * 100000])
def test_a_body_that_is_not_json_raises_value_error(body: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        rewrite_model_list(body)
