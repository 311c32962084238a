"""An OpenFeature provider backed by a flagstone ``Client`` (``pip install flagstone[openfeature]``).

    from openfeature import api
    from flagstone import Client
    from flagstone.runtime.openfeature import FlagstoneProvider

    api.set_provider(FlagstoneProvider(Client.from_file("dist/prod.json", watch=True)))
    api.get_client().get_boolean_value("new-checkout", False, EvaluationContext("user-1"))

The OpenFeature targeting key becomes the flag's unit attribute (``user_id`` unless the
flag names another) unless the context already sets it. A reload emits
PROVIDER_CONFIGURATION_CHANGED with the keys of the flags that changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from flagstone.runtime.client import Client
from flagstone.runtime.evaluate import CompiledBundle

REASONS = {
    "DISABLED": Reason.DISABLED,
    "PREREQUISITE_FAILED": Reason.DISABLED,
    "TARGET_MATCH": Reason.TARGETING_MATCH,
    "RULE_MATCH": Reason.TARGETING_MATCH,
    "SPLIT": Reason.SPLIT,
    "DEFAULT": Reason.DEFAULT,
    "FLAG_NOT_FOUND": Reason.ERROR,
    "ERROR": Reason.ERROR,
}


class FlagstoneProvider(AbstractProvider):
    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self._unsubscribe = client.on_change(self._changed)

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagstone")

    def shutdown(self) -> None:
        self._unsubscribe()

    def _changed(self, new: CompiledBundle, old: CompiledBundle | None) -> None:
        before = old.flags.sources if old is not None else {}
        after = new.flags.sources
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=changed))

    def _context(self, flag_key: str, ctx: EvaluationContext | None) -> dict[str, Any]:
        if ctx is None:
            return {}
        context = dict(ctx.attributes)
        if ctx.targeting_key is not None:
            flag = self.client.bundle.flags.get(flag_key)
            unit = flag.unit if flag is not None else "user_id"
            context.setdefault(unit, ctx.targeting_key)
            context.setdefault("targetingKey", ctx.targeting_key)
        return context

    def _resolve(
        self, flag_key: str, default: Any, ctx: EvaluationContext | None, types: tuple[type, ...]
    ) -> FlagResolutionDetails[Any]:
        r = self.client.details(flag_key, self._context(flag_key, ctx), default)
        if r.reason == "FLAG_NOT_FOUND":
            return FlagResolutionDetails(default, ErrorCode.FLAG_NOT_FOUND, r.message, Reason.ERROR)
        if r.reason == "ERROR":
            return FlagResolutionDetails(default, ErrorCode.GENERAL, r.message, Reason.ERROR)
        if r.variant is None:  # disabled without off_variant: the caller's default
            return FlagResolutionDetails(default, None, None, REASONS[r.reason])
        value = r.value
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return FlagResolutionDetails(
                default,
                ErrorCode.TYPE_MISMATCH,
                f"{flag_key} serves {type(value).__name__}",
                Reason.ERROR,
            )
        metadata: dict[str, bool | int | float | str] = {"flagstone_reason": r.reason}
        if r.rule_index is not None:
            metadata["rule"] = r.rule_index
        if r.experiment is not None:
            metadata["experiment"] = r.experiment
        return FlagResolutionDetails(value, None, None, REASONS[r.reason], r.variant, metadata)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, (bool,))

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, (str,))

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, (int,))

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, (float, int))

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Mapping[str, Any] | Sequence[Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Mapping[str, Any] | Sequence[Any]]:
        return self._resolve(flag_key, default_value, evaluation_context, (dict, list))
