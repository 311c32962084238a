/**
 * `Client`: evaluate one environment's bundle inside the app, from an object or a URL.
 *
 * Nothing here throws into the app: a missing flag, a bad context or a broken bundle gives
 * the caller's default with a reason. A failed, truncated, invalid or wrongly signed bundle
 * is refused and the last good one stays live. A new bundle is compiled before it replaces
 * the old one in a single assignment. What evaluating needs is here; polling a URL
 * (poll.ts) and checking signatures (verify.ts) load on first use.
 */
import { type CompiledBundle, type Resolution, BundleError, compileBundle, outcome, resolve, unitString } from "./evaluate.js";
import { type Context, type Json, get } from "./operators.js";
import type { PublicKey } from "../../src/verify.js";

/**
 * Augmented by `flagstone codegen --lang ts`, so that flag keys, variants, values,
 * experiment arms and config keys are checked by the compiler.
 */
// biome-ignore lint: an interface to augment
export interface Register {}
type Registered<K extends string, D> = Register extends Record<K, infer T> ? T : D;
export type FlagTypes = Registered<"flags", Record<string, { variant: string; value: Json }>>;
export type ExperimentTypes = Registered<"experiments", Record<string, string>>;
export type ConfigTypes = Registered<"config", Record<string, Json>>;
export type FlagKey = keyof FlagTypes & string;
export type VariantOf<K extends FlagKey> = FlagTypes[K] extends { variant: infer V extends string } ? V : string;
export type ValueOf<K extends FlagKey> = FlagTypes[K] extends { value: infer V } ? V : Json;
export type ExperimentKey = keyof ExperimentTypes & string;
export type ArmOf<K extends ExperimentKey> = ExperimentTypes[K] & string;
export type ConfigKey = keyof ConfigTypes & string;
export type ConfigOf<K extends ConfigKey> = ConfigTypes[K];

/** One exposure, in the record shape `flagstone analyze` reads. */
export interface Exposure {
  type: "exposure";
  experiment: string;
  arm: string;
  unit: string;
  flag: string;
  environment: string | null;
  ts: number;
  dimensions: Record<string, unknown>;
}

/**
 * How many units a `consent: required` experiment left out for lacking consent since the
 * last batch: the Python runtime's analytics record, with no id of any kind in it.
 */
export interface ConsentNotGiven {
  type: "consent_not_given";
  experiment: string;
  flag: string;
  environment: string | null;
  units: number;
  /** The batch's window, epoch seconds. */
  from: number;
  to: number;
}

export interface ChangeEvent {
  hash: string | null;
  previousHash: string | null;
  flagsChanged: string[];
}

export interface ClientOptions {
  /** A parsed bundle (or its JSON text): answers are ready synchronously, e.g. for SSR. */
  bundle?: unknown;
  /** Fetch the bundle from here, then poll it. */
  url?: string;
  /** Milliseconds between polls (default 30,000; 0 fetches once). */
  pollInterval?: number;
  headers?: Record<string, string>;
  /** Milliseconds a poll may take before it is abandoned (default 10,000). */
  timeout?: number;
  fetch?: typeof fetch;
  /** Refuse bundles not signed by this Ed25519 key (PEM, raw bytes or CryptoKey). */
  publicKey?: PublicKey;
  /** Called once for each evaluation that serves an experiment arm. */
  onExposure?: (exposure: Exposure) => void;
  /** Called when a bundle is refused (the last good one stays live). */
  onError?: (error: Error) => void;
  /**
   * Called with counts of the units that `consent: required` experiments left out for
   * lacking consent (each unit once per experiment), every `flushInterval` ms while there
   * are any, and on `flush()` and `close()`. Never with a unit id.
   */
  onConsentNotGiven?: (counts: ConsentNotGiven[]) => void;
  /** Milliseconds between batches of consent counts (default 10,000). */
  flushInterval?: number;
}

/** The client's API; `new Client(options)` makes one. */
export interface Client {
  /** Resolves true once a bundle is live, false if the first load failed (polling goes on). */
  readonly ready: Promise<boolean>;
  /** Why the last bundle was refused, or null. */
  readonly lastError: string | null;
  readonly options: ClientOptions;
  readonly hash: string | null;
  readonly environment: string | null;
  /** The live bundle as JSON, or null before the first one. */
  readonly bundle: Record<string, any> | null;
  /**
   * Fetch `url` now and then every `pollInterval` ms (paused while the page is hidden);
   * returns the function that stops polling. The poller (poll.ts) loads on first use.
   */
  watch(url: string, pollInterval?: number): () => void;
  /** Verify (when a public key is set), compile and swap in a bundle; false when it was refused. */
  load(bundle: unknown): Promise<boolean>;
  /** Call `listener` after each bundle change; returns the unsubscribe function. */
  onChange(listener: (event: ChangeEvent) => void): () => void;
  /** Stop polling (`watch` starts again). */
  stop(): void;
  /** Hand the consent counts gathered so far to `onConsentNotGiven` now. */
  flush(): void;
  /** Stop polling, drop the listeners, flush the consent counts. */
  close(): void;
  variant<K extends FlagKey>(flag: K, context: Context): VariantOf<K> | undefined;
  variant<K extends FlagKey, D>(flag: K, context: Context, fallback: D): VariantOf<K> | D;
  value<K extends FlagKey>(flag: K, context: Context): ValueOf<K> | undefined;
  value<K extends FlagKey, D>(flag: K, context: Context, fallback: D): ValueOf<K> | D;
  /** True only when the flag's value is `true`. */
  enabled(flag: FlagKey, context: Context, fallback?: boolean): boolean;
  details<K extends FlagKey>(flag: K, context: Context): Resolution<ValueOf<K> | undefined, VariantOf<K>>;
  details<K extends FlagKey, D>(flag: K, context: Context, fallback: D): Resolution<ValueOf<K> | D, VariantOf<K>>;
  /** `details` without logging an exposure: for views that render more often than they show. */
  resolve<K extends FlagKey, D = undefined>(flag: K, context: Context, fallback?: D): Resolution<ValueOf<K> | D, VariantOf<K>>;
  /** The unit's arm, or null (not running, no consent, outside audience, traffic or layer); logs one exposure. */
  assign<K extends ExperimentKey>(experiment: K, context: Context): ArmOf<K> | null;
  /** `assign` without logging an exposure. */
  arm<K extends ExperimentKey>(experiment: K, context: Context): ArmOf<K> | null;
  /** The exposure record of `context`'s unit in `arm`, or null for an unknown experiment. */
  exposure(experiment: string, arm: string, context: Context): Exposure | null;
  /** Log one exposure of `context`'s unit in `arm` (what `assign` does after assigning). */
  expose(experiment: string, arm: string, context: Context): void;
  /** A config value by dotted key (`api.timeout_ms`). */
  config<K extends ConfigKey>(key: K): ConfigOf<K> | undefined;
  config<K extends ConfigKey, D>(key: K, fallback: D): ConfigOf<K> | D;
}

// A function called with `new`: its state lives in closures (which minify), not in properties.
export const Client = function (options: ClientOptions = {}): Client {
  const { bundle: initial, url, publicKey: key, onError, onExposure, onConsentNotGiven } = options;
  let live: CompiledBundle | null = null;
  let lastError: string | null = null;
  let halt = (): void => {};
  let settle!: (live: boolean) => void;
  const listeners = new Set<(event: ChangeEvent) => void>();
  const ready = new Promise<boolean>((resolve) => (settle = (ok) => ((settle = () => {}), resolve(ok))));

  const report = (error: Error): void => {
    if (!onError) return console.error(`flagstone: ${error.message}`);
    try {
      onError(error);
    } catch {
      // an error handler that throws has nowhere left to report to
    }
  };
  const refuse = (e: any): false => {
    e = e instanceof Error ? e : new BundleError(String(e));
    lastError = e.message;
    report(e);
    return false;
  };
  // An app's callback: what it throws is reported, never thrown back into the caller.
  const call = <T,>(callback: (arg: T) => void, arg: T): void => {
    try {
      callback(arg);
    } catch (e) {
      report(e as Error);
    }
  };

  // Units left out for lacking consent, counted once per experiment; who was counted stays
  // in memory only (at most 100,000 units, then it starts over), the counts carry no id.
  let counted = new Set<string>();
  let counts = new Map<string, ConsentNotGiven>();
  let since = Date.now() / 1000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = (): void => {
    clearTimeout(timer);
    timer = undefined;
    const to = Date.now() / 1000;
    const batch = [...counts.keys()].sort().map((k) => ({ ...counts.get(k)!, from: since, to }));
    counts = new Map();
    since = to;
    if (batch.length) call(onConsentNotGiven!, batch);
  };
  const refused = (experiment: string, unit: string): void => {
    const flag = live?.raw.experiments[experiment].flag;
    const environment = live?.environment ?? null;
    const key = JSON.stringify([experiment, flag, environment]);
    if (!onConsentNotGiven || counted.has(key + unit)) return;
    if (counted.size >= 100_000) counted = new Set();
    counted.add(key + unit);
    const count = counts.get(key) ?? counts.set(key, { type: "consent_not_given", experiment, flag, environment, units: 0, from: 0, to: 0 }).get(key)!;
    count.units++;
    // unref: a pending batch does not keep a Node process alive (close() hands it over).
    (timer ??= setTimeout(flush, options.flushInterval ?? 10_000) as any).unref?.();
  };

  const apply = (bundle: unknown): boolean => {
    try {
      const next = compileBundle(typeof bundle === "string" ? parseJson(bundle) : bundle, refused);
      const previous = live;
      lastError = null;
      if (next.hash === null || next.hash !== previous?.hash) {
        live = next;
        const a = previous?.raw.flags ?? {};
        const b = next.raw.flags ?? {};
        const flagsChanged = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
        for (const listener of [...listeners]) call(listener, { hash: next.hash, previousHash: previous?.hash ?? null, flagsChanged });
      }
      return true;
    } catch (e) {
      return refuse(e);
    }
  };

  const load = async (bundle: unknown): Promise<boolean> => {
    if (key)
      try {
        bundle = typeof bundle === "string" ? parseJson(bundle) : bundle;
        // Loaded on first use: apps without signed bundles never download it.
        await (await import("../../src/verify.js")).verifyBundle(bundle, key);
      } catch (e) {
        return refuse(e);
      }
    return apply(bundle);
  };

  // The hot path of variant() and value(): no Resolution is built.
  const answer = (flag: string, context: Context, fallback: unknown, value?: boolean): any => {
    const compiled = live?.flags.get(flag);
    try {
      const variant = compiled ? compiled.evaluate(context) : null;
      if (variant === null) return fallback;
      if (outcome.experiment !== null) client.expose(outcome.experiment, variant, context);
      return value ? compiled!.variants.get(variant) : variant;
    } catch {
      return fallback;
    }
  };

  const client: Client = {
    ready,
    options,
    get lastError() {
      return lastError;
    },
    get hash() {
      return live?.hash ?? null;
    },
    get environment() {
      return live?.environment ?? null;
    },
    get bundle() {
      return live?.raw ?? null;
    },
    watch(url, pollInterval = options.pollInterval ?? 30_000) {
      halt();
      let stop = (): void => void (url = ""); // stopped before the poller arrived: it never starts
      halt = () => stop();
      import("../../src/poll.js").then(
        ({ poll }) => url && (stop = poll(client, url, pollInterval, refuse, () => settle(live !== null), [0, 0, BundleError] as any)),
        (e) => settle(refuse(e)),
      );
      return () => halt();
    },
    load,
    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    stop: () => halt(),
    flush,
    close() {
      halt();
      listeners.clear();
      flush();
    },
    variant: (flag: string, context: Context, fallback?: unknown) => answer(flag, context, fallback),
    value: (flag: string, context: Context, fallback?: unknown) => answer(flag, context, fallback, true),
    enabled(flag, context, fallback = false) {
      const value = answer(flag, context, undefined, true);
      return value === undefined ? fallback : value === true;
    },
    details(flag: string, context: Context, fallback?: unknown) {
      const r = resolve(live, flag, context, fallback);
      if (r.experiment !== null) client.expose(r.experiment, r.variant!, context);
      return r as any;
    },
    resolve: (flag, context, fallback) => resolve(live, flag, context, fallback) as any,
    assign(experiment, context) {
      const arm = client.arm(experiment, context);
      if (arm !== null) client.expose(experiment, arm, context);
      return arm;
    },
    arm(experiment, context) {
      try {
        return (live?.experiments.get(experiment)?.(context) ?? null) as any;
      } catch {
        return null;
      }
    },
    exposure(experiment, arm, context) {
      const raw = live?.experiments.has(experiment) && live.raw.experiments[experiment];
      if (!raw) return null;
      const dimensions: Record<string, unknown> = {};
      for (const attr of Array.isArray(raw.dimensions) ? raw.dimensions : []) {
        const v = get(context, attr);
        if (v != null) dimensions[attr] = v;
      }
      const unit = unitString(get(context, raw.unit)) ?? "";
      return { type: "exposure", experiment, arm, unit, flag: raw.flag, environment: live!.environment, ts: Date.now() / 1000, dimensions };
    },
    expose(experiment, arm, context) {
      const record = onExposure && client.exposure(experiment, arm, context);
      if (record) call(onExposure!, record);
    },
    config(key: string, fallback?: unknown): any {
      let node: unknown = live?.config;
      for (const part of key.split(".")) node = get(node, part);
      return node === undefined ? fallback : node;
    },
  };

  const start = (ok: boolean): unknown => (ok || !url) && settle(ok);
  if (initial !== undefined) key ? void load(initial).then(start) : start(apply(initial));
  if (url) client.watch(url);
  else if (initial === undefined) settle(false);
  return client;
} as unknown as new (options?: ClientOptions) => Client;

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BundleError(`not valid JSON (truncated or corrupt): ${(e as Error).message}`);
  }
}
