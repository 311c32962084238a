/**
 * Experiments, exactly the Python runtime's assignment: a running experiment buckets the
 * unit under its own salt, after consent (when required), audience, then its layer's range
 * or its traffic share; and the exposure record `flagstone analyze` reads. A part of its
 * own: `import "@flagstone/client/experiments"` (or `@flagstone/client/full`) adds it to the
 * core, and `Client.load` or a URL add it when a bundle holds experiments. No module of the
 * core is imported here (what it needs is handed in, `kit`), so the core stays one chunk.
 */
import type { Exposure } from "../client.js";
import type { Assign, CompiledExperiment, Kit, OnRefusal } from "../evaluate.js";
import type { Context } from "../operators.js";

type Matcher = (ctx: Context) => boolean;

/**
 * Consent is given when the value at the consent path (`privacy.consent_attribute`, default
 * `consent.experiments`), or at a prefix of it, is exactly true: `consent: true` grants every
 * purpose. Nested objects only (not arrays, not a literal dotted key), as in the Python runtime.
 */
export function hasConsent(ctx: Context, path: string[], get: Kit[6]): boolean {
  let node: unknown = ctx;
  for (const part of path) if ((node = get(node, part)) === true) return true;
  return false;
}

/** The experiment compiler, made once from what the core hands in. */
export function experiments([, , , arms, pick, getter, get, bucketer, unitString, condition, unregistered]: Kit) {
  return (key: string, raw: any, segments: (key: string) => Matcher, refused: OnRefusal | null, environment: string | null): CompiledExperiment => {
    const { unit, layer, salt, traffic, audience, flag } = raw;
    const split = arms(raw.arms);
    const unitOf = getter(unit);
    const consentPath: string[] = (raw.consent_attribute ?? "consent.experiments").split(".");
    const armBucket = bucketer(`experiment:${salt}/`);
    const trafficBucket = bucketer(`experiment:${salt}:traffic/`);
    const layerBucket = bucketer(`layer:${layer}/`);
    const inAudience = audience ? condition(audience, segments) : () => true;
    const [start, end] = raw.layer_range ?? [0, 0];
    const running = raw.status === "running";
    const consentRequired = raw.consent_required;
    if (consentRequired && !refused) unregistered(`consent: required with onConsentNotGiven (flag '${flag}')`, "consent");
    const assign: Assign = (ctx) => {
      const u = running ? unitString(unitOf(ctx)) : null;
      if (u === null) return null;
      if (consentRequired && !hasConsent(ctx, consentPath, get)) return refused!(key, u, flag, environment), null;
      if (!inAudience(ctx)) return null;
      if (layer !== undefined) {
        const b = layerBucket(u);
        if (b < start || b >= end) return null;
      } else if (traffic < 10_000 && trafficBucket(u) >= traffic) return null;
      return pick(split, armBucket(u));
    };
    // May throw on a context whose getters throw: the answer that logs it is then the default.
    const exposure = (arm: string, ctx: Context): Exposure => {
      const dimensions: Record<string, unknown> = {};
      for (const attr of Array.isArray(raw.dimensions) ? raw.dimensions : []) {
        const v = get(ctx, attr);
        if (v != null) dimensions[attr] = v;
      }
      return { type: "exposure", experiment: key, arm, unit: unitString(get(ctx, unit)) ?? "", flag, environment, ts: Date.now() / 1000, dimensions };
    };
    return [assign, exposure];
  };
}
