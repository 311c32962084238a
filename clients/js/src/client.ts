/**
 * `Client`: evaluate one environment's bundle inside the app, from an object or a URL.
 *
 * Nothing here throws into the app: a missing flag, a bad context or a broken bundle gives
 * the caller's default with a reason. A URL is polled with If-None-Match (a 304 costs
 * nothing), not while the page is hidden; a failed, truncated, invalid or wrongly signed
 * bundle is refused and the last good one stays live. A new bundle is compiled before it
 * replaces the old one in a single assignment.
 */
import { type CompiledBundle, type Resolution, BundleError, compileBundle, evaluate, outcome, resolve, unitString } from "./evaluate.js";
import { type Context, type Json, get, isMapping } from "./operators.js";
import type { PublicKey } from "./verify.js";

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
}

const hidden = (): boolean => typeof document !== "undefined" && document.visibilityState === "hidden";

export class Client {
  /** Resolves true once a bundle is live, false if the first load failed (polling goes on). */
  readonly ready: Promise<boolean>;
  /** Why the last bundle was refused, or null. */
  lastError: string | null = null;
  private compiled: CompiledBundle | null = null;
  private listeners = new Set<(event: ChangeEvent) => void>();
  private etag: string | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private paused = false;
  private closed = true;
  private url = "";
  private interval = 30_000;
  private readonly options: ClientOptions;

  constructor(options: ClientOptions = {}) {
    this.options = options;
    let settle!: (live: boolean) => void;
    this.ready = new Promise((resolve) => (settle = resolve));
    this.settle = (live) => {
      this.settle = () => {};
      settle(live);
    };
    if (options.bundle !== undefined) {
      if (options.publicKey) void this.load(options.bundle).then((live) => (live || !options.url) && this.settle(live));
      else if (this.apply(options.bundle) || !options.url) this.settle(this.compiled !== null);
    }
    if (options.url) this.watch(options.url, options.pollInterval);
    else if (options.bundle === undefined) this.settle(false);
  }

  private settle: (live: boolean) => void;

  /**
   * Fetch `url` now and then every `pollInterval` ms (paused while the page is hidden);
   * returns the function that stops polling.
   */
  watch(url: string, pollInterval = this.options.pollInterval ?? 30_000): () => void {
    this.stop();
    this.url = url;
    this.interval = pollInterval;
    this.closed = false;
    if (typeof document !== "undefined") document.addEventListener("visibilitychange", this.wake);
    void this.poll().then(() => this.settle(this.compiled !== null));
    return () => this.stop();
  }

  get hash(): string | null {
    return this.compiled?.hash ?? null;
  }

  get environment(): string | null {
    return this.compiled?.environment ?? null;
  }

  /** The live bundle as JSON, or null before the first one. */
  get bundle(): Record<string, unknown> | null {
    return this.compiled?.raw ?? null;
  }

  // --- loading --------------------------------------------------------------------------

  /** Verify (when a public key is set), compile and swap in a bundle; false when it was refused. */
  async load(bundle: unknown): Promise<boolean> {
    try {
      const raw = typeof bundle === "string" ? parseJson(bundle) : bundle;
      if (this.options.publicKey) {
        if (!isMapping(raw)) throw new BundleError("a bundle is a JSON object");
        // Loaded on first use: apps without signed bundles never download it.
        const { verifyBundle } = await import("./verify.js");
        await verifyBundle(raw, this.options.publicKey);
      }
      return this.swap(compileBundle(raw));
    } catch (e) {
      return this.refuse(e);
    }
  }

  private apply(bundle: unknown): boolean {
    try {
      return this.swap(compileBundle(typeof bundle === "string" ? parseJson(bundle) : bundle));
    } catch (e) {
      return this.refuse(e);
    }
  }

  private refuse(e: unknown): false {
    const error = e instanceof Error ? e : new BundleError(String(e));
    this.lastError = error.message;
    this.report(error);
    return false;
  }

  private report(error: Error): void {
    if (this.options.onError) {
      try {
        this.options.onError(error);
      } catch {
        // an error handler that throws has nowhere left to report to
      }
    } else console.error(`flagstone: ${error.message}`);
  }

  private swap(next: CompiledBundle): boolean {
    const previous = this.compiled;
    this.lastError = null;
    if (previous && next.hash !== null && next.hash === previous.hash) return true;
    this.compiled = next;
    if (this.listeners.size) {
      const event: ChangeEvent = { hash: next.hash, previousHash: previous?.hash ?? null, flagsChanged: changedFlags(previous?.raw, next.raw) };
      for (const listener of [...this.listeners]) {
        try {
          listener(event);
        } catch (e) {
          this.report(e as Error);
        }
      }
    }
    return true;
  }

  private async poll(): Promise<void> {
    const { headers, timeout = 10_000, fetch: fetchFn = globalThis.fetch } = this.options;
    const url = this.url;
    // A server that accepts and never answers must not stop the polling.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new BundleError(`${url} did not answer within ${timeout} ms`)), timeout);
    try {
      const response = await fetchFn(url, { headers: this.etag ? { ...headers, "If-None-Match": this.etag } : headers, signal: abort.signal });
      if (response.status === 304) return;
      if (!response.ok) throw new BundleError(`${url} answered HTTP ${response.status}`);
      const text = await response.text();
      // Remember the ETag only of a bundle that went live: a truncated transfer is fetched again.
      if (await this.load(text)) this.etag = response.headers.get("ETag");
    } catch (e) {
      this.refuse(abort.signal.aborted ? abort.signal.reason : e);
    } finally {
      clearTimeout(timer);
      this.schedule();
    }
  }

  private schedule(): void {
    const interval = this.interval;
    if (this.closed || interval <= 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => (hidden() ? (this.paused = true) : this.poll()), interval);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private wake = (): void => {
    if (this.paused && !hidden()) {
      this.paused = false;
      void this.poll();
    }
  };

  /** Call `listener` after each bundle change; returns the unsubscribe function. */
  onChange(listener: (event: ChangeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /** Stop polling (`watch` starts again). */
  stop(): void {
    this.closed = true;
    this.paused = false;
    clearTimeout(this.timer);
    if (typeof document !== "undefined") document.removeEventListener("visibilitychange", this.wake);
  }

  close(): void {
    this.stop();
    this.listeners.clear();
  }

  // --- evaluation -----------------------------------------------------------------------

  variant<K extends FlagKey>(flag: K, context: Context): VariantOf<K> | undefined;
  variant<K extends FlagKey, D>(flag: K, context: Context, fallback: D): VariantOf<K> | D;
  variant(flag: string, context: Context, fallback?: unknown): unknown {
    const bundle = this.compiled;
    const compiled = bundle?.flags.get(flag);
    if (!compiled) return fallback;
    try {
      const variant = evaluate(bundle!, compiled, context);
      if (outcome.experiment !== null) this.expose(outcome.experiment, variant!, context);
      return variant ?? fallback;
    } catch {
      return fallback;
    }
  }

  value<K extends FlagKey>(flag: K, context: Context): ValueOf<K> | undefined;
  value<K extends FlagKey, D>(flag: K, context: Context, fallback: D): ValueOf<K> | D;
  value(flag: string, context: Context, fallback?: unknown): unknown {
    const bundle = this.compiled;
    const compiled = bundle?.flags.get(flag);
    if (!compiled) return fallback;
    try {
      const variant = evaluate(bundle!, compiled, context);
      if (outcome.experiment !== null) this.expose(outcome.experiment, variant!, context);
      return variant === null ? fallback : compiled.variants.get(variant);
    } catch {
      return fallback;
    }
  }

  /** True only when the flag's value is `true`. */
  enabled(flag: FlagKey, context: Context, fallback = false): boolean {
    const value = this.value(flag, context, undefined);
    return value === undefined ? fallback : value === true;
  }

  details<K extends FlagKey>(flag: K, context: Context): Resolution<ValueOf<K> | undefined, VariantOf<K>>;
  details<K extends FlagKey, D>(flag: K, context: Context, fallback: D): Resolution<ValueOf<K> | D, VariantOf<K>>;
  details(flag: string, context: Context, fallback?: unknown): Resolution<unknown> {
    const r = resolve(this.compiled, flag, context, fallback);
    if (r.experiment !== null) this.expose(r.experiment, r.variant!, context);
    return r;
  }

  /** `details` without logging an exposure: for views that render more often than they show. */
  resolve<K extends FlagKey, D = undefined>(flag: K, context: Context, fallback?: D): Resolution<ValueOf<K> | D, VariantOf<K>> {
    return resolve(this.compiled, flag, context, fallback) as Resolution<ValueOf<K> | D, VariantOf<K>>;
  }

  /** The unit's arm, or null (not running, no consent, outside audience, traffic or layer); logs one exposure. */
  assign<K extends ExperimentKey>(experiment: K, context: Context): ArmOf<K> | null {
    const arm = this.arm(experiment, context);
    if (arm !== null) this.expose(experiment, arm, context);
    return arm;
  }

  /** `assign` without logging an exposure. */
  arm<K extends ExperimentKey>(experiment: K, context: Context): ArmOf<K> | null {
    try {
      return (this.compiled?.experiments.get(experiment)?.assign(context) ?? null) as ArmOf<K> | null;
    } catch {
      return null;
    }
  }

  /** The exposure record of `context`'s unit in `arm`, or null for an unknown experiment. */
  exposure(experiment: string, arm: string, context: Context): Exposure | null {
    const compiled = this.compiled?.experiments.get(experiment);
    if (!compiled) return null;
    const dimensions: Record<string, unknown> = {};
    for (const attr of compiled.dimensions) {
      const v = get(context, attr);
      if (v != null) dimensions[attr] = v;
    }
    const unit = unitString(get(context, compiled.unit)) ?? "";
    return { type: "exposure", experiment, arm, unit, flag: compiled.flag, environment: this.compiled!.environment, ts: Date.now() / 1000, dimensions };
  }

  /** Log one exposure of `context`'s unit in `arm` (what `assign` does after assigning). */
  expose(experiment: string, arm: string, context: Context): void {
    const onExposure = this.options.onExposure;
    const record = onExposure && this.exposure(experiment, arm, context);
    if (!record) return;
    try {
      onExposure(record);
    } catch (e) {
      this.report(e as Error);
    }
  }

  /** A config value by dotted key (`api.timeout_ms`). */
  config<K extends ConfigKey>(key: K): ConfigOf<K> | undefined;
  config<K extends ConfigKey, D>(key: K, fallback: D): ConfigOf<K> | D;
  config(key: string, fallback?: unknown): unknown {
    let node: unknown = this.compiled?.config;
    for (const part of key.split(".")) {
      if (!isMapping(node) || !Object.prototype.hasOwnProperty.call(node, part)) return fallback;
      node = node[part];
    }
    return node;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BundleError(`not valid JSON (truncated or corrupt): ${(e as Error).message}`);
  }
}

function changedFlags(before: Record<string, any> | undefined, after: Record<string, any>): string[] {
  const a = before?.flags ?? {};
  const b = after.flags ?? {};
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !(k in a && k in b) || !sameJson(a[k], b[k])).sort();
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || !a || !b || Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && sameJson((a as any)[k], (b as any)[k]));
}
