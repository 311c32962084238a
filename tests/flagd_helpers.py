"""The real flagd in-process provider (openfeature-provider-flagd) on an exported file."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import OpenFeatureError
from openfeature.flag_evaluation import FlagEvaluationDetails


@contextmanager
def flagd_provider(path: Path) -> Iterator[OpenFeatureClient]:
    """The in-process file resolver on ``path``, ready to evaluate; shut down afterwards."""
    api.set_provider(
        FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
    )
    try:
        client = api.get_client()
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and client.get_boolean_details("__probe__", False).error_code == "PROVIDER_NOT_READY"
        ):
            time.sleep(0.02)
        time.sleep(0.3)
        yield client
    finally:
        api.shutdown()
        api.clear_providers()


def flagd_context(ctx: Mapping[str, Any], unit: str = "user_id") -> EvaluationContext:
    """What an app passes to OpenFeature: the default unit as the (string) targeting key,
    everything else as attributes."""
    value = ctx.get(unit)
    key = value if type(value) is str else str(value) if type(value) is int else None
    return EvaluationContext(key, {k: v for k, v in ctx.items() if k != unit})


def flagd_details(
    client: OpenFeatureClient, key: str, variants: Mapping[str, Any], ctx: Mapping[str, Any]
) -> FlagEvaluationDetails[Any]:
    """Evaluate through the OpenFeature SDK with the typed method the variant values call for."""
    kind = value_kind(variants)
    method = getattr(client, f"get_{kind}_details")
    return method(key, DEFAULTS[kind], flagd_context(ctx))  # type: ignore[no-any-return]


def provider_answer(
    provider: FlagdProvider, key: str, variants: Mapping[str, Any], ctx: Mapping[str, Any]
) -> tuple[Any, Any]:
    """The provider's own resolve call, without the SDK around it (a third of the time):
    (variant, value), or (None, reason) where the caller's default is served."""
    kind = value_kind(variants)
    try:
        details = getattr(provider, f"resolve_{kind}_details")(
            key, DEFAULTS[kind], flagd_context(ctx)
        )
    except OpenFeatureError:
        return None, "ERROR"  # the SDK turns a raised error into the default with reason ERROR
    if details.variant is None:
        return None, reason_name(details.reason)
    return details.variant, details.value


DEFAULTS: dict[str, Any] = {
    "boolean": False,
    "string": "",
    "integer": 0,
    "float": 0.0,
    "object": {},
}


def value_kind(variants: Mapping[str, Any]) -> str:
    sample = next(iter(variants.values()))
    if isinstance(sample, bool):
        return "boolean"
    if isinstance(sample, str):
        return "string"
    if isinstance(sample, int):
        return "integer"
    if isinstance(sample, float):
        return "float"
    return "object"


def reason_name(reason: Any) -> str:
    return str(reason).rsplit(".", 1)[-1]
