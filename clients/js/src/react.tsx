/**
 * React bindings: providers and hooks over a `Client`, built on useSyncExternalStore.
 *
 * A hook re-renders when its own answer changes (a new bundle, a new evaluation context),
 * and not otherwise: the store notifies every subscribed hook, and React compares each
 * hook's answer before rendering. Exposures are logged when a component showing an arm
 * is mounted (never during a render, so never on the server), once per unit per experiment.
 * Rendering never touches `window`; a bundle passed as a prop answers synchronously, so the
 * server's markup and the hydrated client's agree.
 */
import { type ReactNode, createContext, createElement, useCallback, useContext, useEffect, useLayoutEffect, useState, useSyncExternalStore } from "react";
import { Client, type ClientOptions, type ConfigKey, type ConfigOf, type ExperimentKey, type ArmOf, type Exposure, type FlagKey, type ValueOf, type VariantOf } from "./client.js";
import { type Context, get } from "./operators.js";

type Log = (exposure: Exposure) => void;

class FlagStore {
  private listeners = new Set<() => void>();
  private seen = new Set<string>();

  constructor(
    readonly client: Client,
    public context: Context,
  ) {}

  subscribe(notify: () => void, expose?: (store: FlagStore) => void): () => void {
    const listener = (): void => {
      expose?.(this);
      notify();
    };
    expose?.(this);
    this.listeners.add(listener);
    const off = this.client.onChange(listener);
    return () => {
      off();
      this.listeners.delete(listener);
    };
  }

  setContext(context: Context): void {
    if (shallowEqual(context, this.context)) return;
    this.context = context;
    for (const listener of [...this.listeners]) listener();
  }

  /** Log `arm` for this context's unit, once per unit per experiment. */
  log(experiment: string, arm: string, log: Log | null): void {
    const record = this.client.exposure(experiment, arm, this.context);
    if (!record) return;
    const key = `${experiment}\u0000${record.unit}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    if (log) log(record);
    else this.client.expose(experiment, arm, this.context);
  }
}

function shallowEqual(a: Context, b: Context): boolean {
  if (a === b) return true;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.is(a[k], get(b, k)));
}

const StoreContext = createContext<FlagStore | null>(null);
const ExposureContext = createContext<{ log: Log | null } | null>(null);
const ConfigContext = createContext<{ client: Client | null; defaults: Record<string, unknown> } | null>(null);
const useIsoLayoutEffect = typeof window === "undefined" ? useEffect : useLayoutEffect;

function useStore(hook: string): FlagStore {
  const store = useContext(StoreContext);
  if (!store) throw new Error(`flagstone: ${hook}() needs a <FeatureFlagProvider> above it`);
  return store;
}

/** A client of its own from `bundle`/`options` (polled after mount when `options.url` is set), or the one given. */
function useOwnClient(client: Client | undefined, bundle: unknown, options: ClientOptions | undefined): Client {
  const [own] = useState(() => client ?? new Client({ ...options, bundle, url: undefined }));
  useEffect(() => {
    if (client || !options?.url) return;
    return own.watch(options.url, options.pollInterval);
  }, [own, client, options?.url, options?.pollInterval]);
  return own;
}

export interface FeatureFlagProviderProps {
  /** A client made by the app, or let the provider make one from `bundle` and `options`. */
  client?: Client;
  /** A parsed bundle, e.g. serialized into the page by the server: answers on the first render. */
  bundle?: unknown;
  /** Client options; with `url`, the bundle is polled from the browser after mount. */
  options?: ClientOptions;
  /** The evaluation context: `{user_id, country, consent, ...}`. */
  context: Context;
  children?: ReactNode;
}

export function FeatureFlagProvider({ client, bundle, options, context, children }: FeatureFlagProviderProps): ReactNode {
  const own = useOwnClient(client, bundle, options);
  const [store] = useState(() => new FlagStore(own, context));
  useIsoLayoutEffect(() => store.setContext(context), [store, context]);
  return createElement(StoreContext.Provider, { value: store }, children);
}

export interface ABTestProviderProps {
  /** Where exposures go (default: the client's `onExposure`); each unit once per experiment. */
  onExposure?: Log;
  children?: ReactNode;
}

/** Experiments beneath log their exposures here. Consent is read from the context (`consent: true`). */
export function ABTestProvider({ onExposure, children }: ABTestProviderProps): ReactNode {
  const [value] = useState(() => ({ log: null as Log | null }));
  value.log = onExposure ?? null;
  return createElement(ExposureContext.Provider, { value }, children);
}

export interface ConfigurationProviderProps {
  client?: Client;
  bundle?: unknown;
  options?: ClientOptions;
  /** Values for keys the bundle does not have. */
  defaults?: Partial<{ [K in ConfigKey]: ConfigOf<K> }>;
  children?: ReactNode;
}

/** Configuration for `useConfig` beneath: its own client or bundle, or the FeatureFlagProvider's. */
export function ConfigurationProvider({ client, bundle, options, defaults = {}, children }: ConfigurationProviderProps): ReactNode {
  const flags = useContext(StoreContext);
  const own = client ?? (bundle !== undefined || options ? undefined : flags?.client);
  const made = useOwnClient(own, bundle, options);
  const [value] = useState(() => ({ client: made, defaults: defaults as Record<string, unknown> }));
  value.defaults = defaults as Record<string, unknown>;
  return createElement(ConfigContext.Provider, { value }, children);
}

function useAnswer<T>(hook: string, answer: (client: Client, context: Context) => T, exposure?: (store: FlagStore) => void, deps: unknown[] = []): T {
  const store = useStore(hook);
  const subscribe = useCallback((notify: () => void) => store.subscribe(notify, exposure), [store, ...deps]);
  const snapshot = (): T => answer(store.client, store.context);
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}

// The overloads check keys against the generated types; inside, a key is a key.
const resolve = (c: Client, flag: string, ctx: Context, fallback?: unknown) => c.resolve(flag as FlagKey, ctx, fallback);

function useFlagExposure(flag: string): (store: FlagStore) => void {
  const exposures = useContext(ExposureContext);
  return (store) => {
    const r = resolve(store.client, flag, store.context);
    if (r.experiment !== null && r.variant !== null) store.log(r.experiment, r.variant, exposures?.log ?? null);
  };
}

/** The flag's variant name (or `fallback`). */
export function useVariant<K extends FlagKey>(flag: K): VariantOf<K> | undefined;
export function useVariant<K extends FlagKey, D>(flag: K, fallback: D): VariantOf<K> | D;
export function useVariant(flag: string, fallback?: unknown): unknown {
  const expose = useFlagExposure(flag);
  return useAnswer("useVariant", (c, ctx) => resolve(c, flag, ctx).variant ?? fallback, expose, [flag]);
}

/** The flag's value (or `fallback`). */
export function useValue<K extends FlagKey>(flag: K): ValueOf<K> | undefined;
export function useValue<K extends FlagKey, D>(flag: K, fallback: D): ValueOf<K> | D;
export function useValue(flag: string, fallback?: unknown): unknown {
  const expose = useFlagExposure(flag);
  return useAnswer("useValue", (c, ctx) => resolve(c, flag, ctx, fallback).value, expose, [flag]);
}

/** True only when the flag's value is `true`. */
export function useFlag(flag: FlagKey, fallback = false): boolean {
  const expose = useFlagExposure(flag);
  return useAnswer(
    "useFlag",
    (c, ctx) => {
      const r = resolve(c, flag, ctx);
      return r.variant === null ? fallback : r.value === true;
    },
    expose,
    [flag],
  );
}

/** The unit's arm in a running experiment, or null; logs the exposure once per unit. */
export function useExperiment<K extends ExperimentKey>(experiment: K): ArmOf<K> | null {
  const exposures = useContext(ExposureContext);
  return useAnswer(
    "useExperiment",
    (c, ctx) => c.arm(experiment, ctx),
    (store) => {
      const arm = store.client.arm(experiment, store.context);
      if (arm !== null) store.log(experiment, arm, exposures?.log ?? null);
    },
    [experiment],
  );
}

/** A config value by dotted key, from the nearest ConfigurationProvider or FeatureFlagProvider. */
export function useConfig<K extends ConfigKey>(key: K): ConfigOf<K> | undefined;
export function useConfig<K extends ConfigKey, D>(key: K, fallback: D): ConfigOf<K> | D;
export function useConfig(key: string, fallback?: unknown): unknown {
  const config = useContext(ConfigContext);
  const store = useContext(StoreContext);
  const client = config?.client ?? store?.client;
  if (!client) throw new Error("flagstone: useConfig() needs a <ConfigurationProvider> or <FeatureFlagProvider> above it");
  const subscribe = useCallback((notify: () => void) => client.onChange(notify), [client]);
  const snapshot = (): unknown => client.config(key as ConfigKey, config?.defaults[key] ?? fallback);
  return useSyncExternalStore(subscribe, snapshot, snapshot);
}

/** The client of the nearest FeatureFlagProvider, and the context it evaluates with. */
export function useFlagstone(): { client: Client; context: Context } {
  const store = useStore("useFlagstone");
  return { client: store.client, context: store.context };
}

