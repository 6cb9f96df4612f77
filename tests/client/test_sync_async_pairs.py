"""Every sync method has an async twin with the same signature and docstring.

The two clients are written side by side; this is what keeps them from drifting apart: a
parameter, default or doc line added to one and not the other fails here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient
from finetune_lab.client import resources

# The client's own methods that only exist on one side, by design.
CLIENT_ONLY = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def _resource_pairs() -> list[tuple[type, type]]:
    pairs = [(FinetuneLabClient, AsyncFinetuneLabClient)]
    for name in resources.__all__:
        if name.startswith("Async"):
            pairs.append((getattr(resources, name.removeprefix("Async")), getattr(resources, name)))
    return pairs


PAIRS = _resource_pairs()


def _public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in CLIENT_ONLY
    }


def _as_async(annotation: str) -> str:
    """What a sync return annotation reads as on the async side."""
    return annotation.replace("Iterator[", "AsyncIterator[")


def test_every_resource_has_a_pair() -> None:
    names = set(resources.__all__)
    assert len(PAIRS) == 1 + len([n for n in names if n.startswith("Async")])
    assert {n for n in names if not n.startswith("Async")} == {
        n.removeprefix("Async") for n in names if n.startswith("Async")
    }


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=[s.__name__ for s, _ in PAIRS])
def test_sync_and_async_methods_match(sync_cls: type, async_cls: type) -> None:
    sync_methods = _public_methods(sync_cls)
    async_methods = _public_methods(async_cls)
    assert sorted(sync_methods) == sorted(async_methods)
    assert sync_methods, sync_cls
    for name, sync_method in sync_methods.items():
        async_method = async_methods[name]
        where = f"{async_cls.__name__}.{name}"
        sync_sig = inspect.signature(sync_method)
        async_sig = inspect.signature(async_method)
        assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values()), where
        sync_return = _as_async(str(sync_sig.return_annotation))
        assert sync_return == str(async_sig.return_annotation), where
        assert inspect.getdoc(sync_method) == inspect.getdoc(async_method), where
        if str(async_sig.return_annotation).startswith("AsyncIterator["):
            assert not inspect.iscoroutinefunction(async_method), where  # `async for`, no await
        else:
            assert inspect.iscoroutinefunction(async_method), where
            assert not inspect.iscoroutinefunction(sync_method), where
