/**
 * `Client`: evaluate one environment's bundle inside the app, from an object or a URL.
 *
 * Nothing here throws into the app: a missing flag, a bad context or a broken bundle gives
 * the caller's default with a reason. A failed, truncated, invalid or wrongly signed bundle
 * is refused and the last good one stays live. A new bundle is compiled before it replaces
 * the old one in a single assignment. What evaluating needs is here, but for the parts with
 * entry points of their own (parts/: experiments, prerequisites, regex, dates, semver, the
 * consent counts); the async paths (poll.ts: polling a URL, preparing a bundle for `load`,
 * telling the listeners what changed), the parts they import and checking signatures
 * (signature.ts) load on first use.
 */
import { type CompiledBundle, type CompiledFlag, type Resolution, BundleError, compileBundle, done, kit, outcome, parts } from "./evaluate.js";
import { type Context, type Json, get } from "./operators.js";
import type { Counter } from "./parts/consent.js";
import type { PublicKey } from "./signature.js";

export { parts };

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
  /** Import the parts the bundle uses, verify it (when a public key is set), compile and swap it in; false when it was refused. */
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
  /** The exposure record of `context`'s unit in `arm`, or null (an unknown experiment, a context that cannot be read). */
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
  // A promise settles once: later calls of its resolve function do nothing.
  const ready = new Promise<boolean>((resolve) => (settle = resolve));

  const report = (error: Error): void => {
    if (!onError) return console.error(`flagstone: ${error.message}`);
    try {
      onError(error);
    } catch {
      // an error handler that throws has nowhere left to report to
    }
  };
  // Every refusal is an Error (poll.ts makes its messages BundleErrors).
  const refuse = (e: Error): false => {
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

  // The consent counts (parts/consent.ts), made on the first bundle after the part is imported.
  let consent: Counter | undefined;
  const flush = (): void => consent?.[1]();

  // Compile and swap in. The listeners hear of it on `load` (poll.ts): the one sync call, from
  // the constructor, comes before any listener can be added.
  const apply = (bundle: unknown): boolean => {
    try {
      consent ||= onConsentNotGiven && parts.consent?.((counts) => call(onConsentNotGiven, counts), options.flushInterval);
      // Without the part, a bundle whose experiments require consent is refused (null), naming the import.
      live = compileBundle(parse(bundle), consent ? consent[0] : onConsentNotGiven ? null : undefined);
      lastError = null;
      return true;
    } catch (e) {
      return refuse(e as Error);
    }
  };

  // poll.ts imports the parts the bundle uses, checks its signature, and tells the listeners
  // what changed; a bundle with the live one's hash changes nothing. Loaded on first use.
  const load = async (bundle: unknown): Promise<boolean> => {
    const previous = live;
    let poll: typeof import("./poll.js");
    try {
      poll = await import("./poll.js");
      if (await poll.prepare((bundle = parse(bundle)), key, !!onConsentNotGiven, kit, previous)) return !(lastError = null);
    } catch (e) {
      return refuse(e as Error);
    }
    return apply(bundle) && poll.changed(previous, live!, listeners, call);
  };

  // May throw on a context whose getters throw: the answer that logs it is then the default.
  const exposure = (experiment: string, arm: string, context: Context): Exposure | null => live?.experiments.get(experiment)?.[1](arm, context) ?? null;
  const expose = (experiment: string, arm: string, context: Context): void => {
    const record = onExposure && exposure(experiment, arm, context);
    if (record) call(onExposure!, record);
  };

  // Every answer: the variant, or null with the reason in `outcome` (the flag in `last`);
  // an experiment arm served is logged when `log`. Never throws. The hot path of variant()
  // and value() builds no Resolution.
  let last: CompiledFlag | undefined;
  const run = (flag: string, context: Context, log?: boolean): string | null => {
    try {
      const variant = (last = live?.flags.get(flag)) ? last.evaluate(context) : done(null, "FLAG_NOT_FOUND", live ? `no flag '${flag}' in the bundle` : "no bundle loaded yet");
      if (log && outcome.experiment !== null) expose(outcome.experiment, variant!, context);
      return variant;
    } catch (e: any) {
      return done(null, "ERROR", `${e?.name}: ${e?.message}`);
    }
  };
  const valueOf = (variant: string | null, fallback: unknown): any => (variant === null ? fallback : last!.variants.get(variant));
  const resolution = (variant: string | null, fallback: unknown): any => ({ value: valueOf(variant, fallback), variant, ...outcome });

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
    watch(url, pollInterval) {
      halt();
      let stop = (): void => void (url = ""); // stopped before the poller arrived: it never starts
      halt = () => stop();
      import("./poll.js").then(
        ({ poll }) => url && (stop = poll(client, url, pollInterval, refuse, () => settle(live !== null), kit)),
        (e) => settle(refuse(e as Error)),
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
    variant: (flag: string, context: Context, fallback?: unknown) => (run(flag, context, true) ?? fallback) as any,
    value: (flag: string, context: Context, fallback?: unknown) => valueOf(run(flag, context, true), fallback),
    enabled: (flag, context, fallback = false) => {
      const value = valueOf(run(flag, context, true), undefined);
      return value === undefined ? fallback : value === true;
    },
    details: (flag: string, context: Context, fallback?: unknown) => resolution(run(flag, context, true), fallback),
    resolve: (flag, context, fallback) => resolution(run(flag, context), fallback),
    assign(experiment, context) {
      try {
        const arm = client.arm(experiment, context);
        if (arm !== null) expose(experiment, arm, context);
        return arm;
      } catch {
        return null;
      }
    },
    arm(experiment, context) {
      try {
        return (live?.experiments.get(experiment)?.[0](context) ?? null) as any;
      } catch {
        return null;
      }
    },
    exposure(experiment, arm, context) {
      try {
        return exposure(experiment, arm, context);
      } catch {
        return null;
      }
    },
    expose(experiment, arm, context) {
      try {
        expose(experiment, arm, context);
      } catch {
        // a context whose getters throw has no exposure record
      }
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

/** A bundle given as JSON text, parsed; an object as it is. */
function parse(bundle: unknown): unknown {
  try {
    return typeof bundle === "string" ? JSON.parse(bundle) : bundle;
  } catch (e) {
    throw new BundleError(`not valid JSON (truncated or corrupt): ${(e as Error).message}`);
  }
}
