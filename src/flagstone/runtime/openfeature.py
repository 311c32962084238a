"""An OpenFeature provider backed by a flagstone ``Client`` (``pip install flagstone[openfeature]``).

    from openfeature import api
    from flagstone.runtime.openfeature import FlagstoneProvider

    api.set_provider(FlagstoneProvider.from_file("dist/prod.json", watch=True))
    api.get_client().get_boolean_value("new-checkout", False, EvaluationContext("user-1"))

Mapping (each choice is held by a test named after the spec requirement it meets):
- The targeting key is the project's default unit (``default_unit``, the person), as
  in the flagd export; it wins over an attribute of that name, and every other
  attribute is passed as given (a flag bucketed by ``org_id`` reads ``org_id``).
- Reasons: TARGET_MATCH/RULE_MATCH -> TARGETING_MATCH, SPLIT, DEFAULT, DISABLED, and
  PREREQUISITE_FAILED as its own reason; errors carry the spec's codes: FLAG_NOT_FOUND,
  TYPE_MISMATCH, TARGETING_KEY_MISSING (the default unit is needed and absent),
  INVALID_CONTEXT (another unit attribute is), PARSE_ERROR (a bundle refused at start),
  GENERAL (anything else).
- A float lookup of an integer value returns it as a float.
- Events: PROVIDER_CONFIGURATION_CHANGED with the changed flag keys after a reload,
  PROVIDER_ERROR when a new bundle is refused, PROVIDER_STALE when the source cannot be
  read, PROVIDER_READY on recovery. ``api.shutdown()`` stops the reload thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, GeneralError, ParseError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from flagstone.runtime.client import Client, Status
from flagstone.runtime.errors import BundleError, BundleUnavailable
from flagstone.runtime.evaluate import CompiledBundle, unit_string

PREREQUISITE_FAILED = "PREREQUISITE_FAILED"  # not in the spec's list; its own reason, as allowed
REASONS: dict[str, str] = {
    "DISABLED": Reason.DISABLED,
    "PREREQUISITE_FAILED": PREREQUISITE_FAILED,
    "TARGET_MATCH": Reason.TARGETING_MATCH,
    "RULE_MATCH": Reason.TARGETING_MATCH,
    "SPLIT": Reason.SPLIT,
    "DEFAULT": Reason.DEFAULT,
    "FLAG_NOT_FOUND": Reason.ERROR,
    "ERROR": Reason.ERROR,
}


class FlagstoneProvider(AbstractProvider):
    """OpenFeature provider over a flagstone client (given, or built in ``initialize``)."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        factory: Callable[[], Client] | None = None,
        close_client: bool = True,
    ) -> None:
        super().__init__()
        if (client is None) == (factory is None):
            raise TypeError("pass a Client, or use FlagstoneProvider.from_file / from_url")
        self._client = client
        self._factory = factory
        self._close_client = close_client
        self._unsubscribes: list[Callable[[], None]] = []
        if client is not None:
            self._attach(client)

    @classmethod
    def from_file(cls, path: Any, **options: Any) -> FlagstoneProvider:
        """Read the bundle in ``initialize``: a refused bundle is a PARSE_ERROR there."""
        return cls(factory=lambda: Client.from_file(path, **options))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FlagstoneProvider:
        return cls(factory=lambda: Client.from_url(url, **options))

    @property
    def client(self) -> Client:
        if self._client is None:
            raise GeneralError("the flagstone provider is not initialized")
        return self._client

    def _attach(self, client: Client) -> None:
        self._unsubscribes = [client.on_change(self._changed), client.on_status(self._status)]

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagstone")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if self._client is None and self._factory is not None:
            try:
                client = self._factory()
            except BundleUnavailable as e:
                raise GeneralError(str(e)) from None
            except BundleError as e:
                raise ParseError(str(e)) from None
            self._client = client
            self._attach(client)
        status = self.client.status
        if status.state == "ERROR":
            raise ParseError(status.last_error)

    def shutdown(self) -> None:
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        self._unsubscribes = []
        if self._client is not None and self._close_client:
            self._client.close()

    def _changed(self, new: CompiledBundle, old: CompiledBundle | None) -> None:
        before = old.flags.sources if old is not None else {}
        after = new.flags.sources
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=changed))

    def _status(self, status: Status) -> None:
        if status.state == "READY":
            self.emit_provider_ready(ProviderEventDetails(message="bundle loaded"))
        elif status.state == "STALE":
            self.emit_provider_stale(ProviderEventDetails(message=status.last_error))
        else:
            self.emit_provider_error(
                ProviderEventDetails(message=status.last_error, error_code=ErrorCode.PARSE_ERROR)
            )

    def _context(self, ctx: EvaluationContext | None) -> dict[str, Any]:
        if ctx is None:
            return {}
        context = dict(ctx.attributes)
        if ctx.targeting_key is not None:
            context[self.client.bundle.meta.get("default_unit", "user_id")] = ctx.targeting_key
        return context

    def _resolve(
        self, flag_key: str, default: Any, ctx: EvaluationContext | None, kind: str
    ) -> FlagResolutionDetails[Any]:
        client = self.client
        context = self._context(ctx)
        r = client.details(flag_key, context, default)
        if r.reason == "FLAG_NOT_FOUND":
            return FlagResolutionDetails(default, ErrorCode.FLAG_NOT_FOUND, r.message, Reason.ERROR)
        if r.reason == "ERROR":
            return FlagResolutionDetails(
                default, self._error_code(client, flag_key, context), r.message, Reason.ERROR
            )
        if r.variant is None:  # disabled without off_variant: the caller's default
            return FlagResolutionDetails(default, None, None, REASONS[r.reason])
        value = _typed(r.value, kind)
        if value is _MISMATCH:
            return FlagResolutionDetails(
                default,
                ErrorCode.TYPE_MISMATCH,
                f"{flag_key} serves {type(r.value).__name__}, not {kind}",
                Reason.ERROR,
            )
        metadata: dict[str, bool | int | float | str] = {"flagstone_reason": r.reason}
        if r.rule_index is not None:
            metadata["rule"] = r.rule_index
        if r.experiment is not None:
            metadata["experiment"] = r.experiment
        if client.bundle.hash is not None:
            metadata["bundle"] = client.bundle.hash
        return FlagResolutionDetails(value, None, None, REASONS[r.reason], r.variant, metadata)

    def _error_code(self, client: Client, key: str, context: Mapping[str, Any]) -> ErrorCode:
        flag = client.bundle.flags.get(key)
        if flag is not None and unit_string(context.get(flag.unit)) is None:
            default_unit = client.bundle.meta.get("default_unit", "user_id")
            return (
                ErrorCode.TARGETING_KEY_MISSING
                if flag.unit == default_unit
                else ErrorCode.INVALID_CONTEXT
            )
        return ErrorCode.GENERAL

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Mapping[str, Any] | Sequence[Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Mapping[str, Any] | Sequence[Any]]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")


_MISMATCH: Any = object()


def _typed(value: Any, kind: str) -> Any:
    t = type(value)
    if kind == "boolean":
        return value if t is bool else _MISMATCH
    if kind == "string":
        return value if t is str else _MISMATCH
    if kind == "integer":
        return value if t is int else _MISMATCH
    if kind == "float":
        return float(value) if t is int or t is float else _MISMATCH
    return value if isinstance(value, dict | list) else _MISMATCH
