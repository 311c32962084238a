/**
 * An OpenFeature web provider (`@openfeature/web-sdk`) backed by a flagstone `Client`, so
 * apps on the OpenFeature SDKs (the React SDK included) evaluate flagstone bundles:
 *
 *     await OpenFeature.setProviderAndWait(new FlagstoneWebProvider(new Client({ url: "/flags/prod.json" })));
 *
 * The targeting key becomes the bundle's default unit attribute (`user_id`). A new
 * bundle emits PROVIDER_CONFIGURATION_CHANGED with the keys of the flags that changed.
 * An evaluation that serves an experiment arm logs the exposure, once per unit per experiment.
 */
import {
  type EvaluationContext,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
  ErrorCode,
  OpenFeatureEventEmitter,
  ProviderEvents,
  StandardResolutionReasons as Std,
} from "@openfeature/web-sdk";
import type { Client, FlagKey } from "./client.js";

const REASONS: Record<string, string> = {
  DISABLED: Std.DISABLED,
  PREREQUISITE_FAILED: Std.DISABLED,
  TARGET_MATCH: Std.TARGETING_MATCH,
  RULE_MATCH: Std.TARGETING_MATCH,
  SPLIT: Std.SPLIT,
  DEFAULT: Std.DEFAULT,
};

export class FlagstoneWebProvider implements Provider {
  readonly metadata = { name: "flagstone" } as const;
  readonly runsOn = "client" as const;
  readonly events = new OpenFeatureEventEmitter();
  private readonly unsubscribe: () => void;
  private readonly exposed = new Set<string>();
  private failed = false;

  constructor(readonly client: Client) {
    this.unsubscribe = client.onChange((change) => {
      if (this.failed) {
        this.failed = false;
        this.events.emit(ProviderEvents.Ready);
      }
      this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: change.flagsChanged });
    });
  }

  async initialize(): Promise<void> {
    if (!(await this.client.ready)) {
      this.failed = true;
      throw new Error(`flagstone: no bundle yet (${this.client.lastError ?? "not loaded"})`);
    }
  }

  async onClose(): Promise<void> {
    this.unsubscribe();
  }

  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): ResolutionDetails<boolean> {
    return this.evaluate(flagKey, defaultValue, context, (v) => typeof v === "boolean");
  }

  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext): ResolutionDetails<string> {
    return this.evaluate(flagKey, defaultValue, context, (v) => typeof v === "string");
  }

  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): ResolutionDetails<number> {
    return this.evaluate(flagKey, defaultValue, context, (v) => typeof v === "number");
  }

  resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext): ResolutionDetails<T> {
    return this.evaluate(flagKey, defaultValue, context, (v) => typeof v === "object" && v !== null);
  }

  private evaluate<T>(flagKey: string, defaultValue: T, context: EvaluationContext, isType: (v: unknown) => boolean): ResolutionDetails<T> {
    const { targetingKey, ...attributes } = context;
    const ctx: Record<string, unknown> = attributes;
    // As the Python provider does: the targeting key is the bundle's default unit attribute.
    if (targetingKey !== undefined) ctx[(this.client.bundle?.default_unit as string | undefined) ?? "user_id"] = targetingKey;
    const r = this.client.resolve(flagKey as FlagKey, ctx, defaultValue);
    if (r.reason === "FLAG_NOT_FOUND") return { value: defaultValue, reason: Std.ERROR, errorCode: ErrorCode.FLAG_NOT_FOUND, errorMessage: r.message ?? undefined };
    if (r.reason === "ERROR") return { value: defaultValue, reason: Std.ERROR, errorCode: ErrorCode.GENERAL, errorMessage: r.message ?? undefined };
    if (r.variant === null) return { value: defaultValue, reason: REASONS[r.reason] }; // disabled without an off variant
    if (!isType(r.value))
      return { value: defaultValue, reason: Std.ERROR, errorCode: ErrorCode.TYPE_MISMATCH, errorMessage: `${flagKey} serves ${JSON.stringify(r.value)}` };
    if (r.experiment !== null) {
      const exposure = this.client.exposure(r.experiment, r.variant, ctx);
      const key = `${r.experiment}\u0000${exposure?.unit}`;
      if (exposure && !this.exposed.has(key)) {
        this.exposed.add(key);
        this.client.expose(r.experiment, r.variant, ctx);
      }
    }
    const flagMetadata: Record<string, string | number> = { flagstone_reason: r.reason };
    if (r.ruleIndex !== null) flagMetadata.rule = r.ruleIndex;
    if (r.experiment !== null) flagMetadata.experiment = r.experiment;
    return { value: r.value as T, variant: r.variant, reason: REASONS[r.reason], flagMetadata };
  }
}
