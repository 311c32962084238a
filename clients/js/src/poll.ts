/**
 * The asynchronous paths, loaded on first use (apps that pass a bundle never download it):
 * preparing a bundle for `Client.load` (importing the parts it uses, checking its
 * signature), telling the listeners what it changed, and polling a bundle URL, loaded by
 * `Client.watch`. Each poll sends If-None-Match with the ETag of the live bundle (a
 * 304 costs nothing); while the page is hidden no poll runs, and showing it polls at once.
 * A failed, truncated, invalid or unanswered fetch is refused and the last good bundle stays.
 */
import type { ChangeEvent, Client } from "./client.js";
import type { CompiledBundle, Kit } from "./evaluate.js";
import type { PublicKey } from "./signature.js";

/**
 * Before `Client.load` compiles a parsed bundle: the parts its conditions and experiments use
 * are imported and added (so the app needs no import of theirs on this path), and with `key`
 * its signature is verified. Nothing of the core is imported: what it needs is handed in.
 */
export async function prepare(bundle: any, key: PublicKey | undefined, consent: boolean, kit: Kit, live: CompiledBundle | null): Promise<boolean> {
  const [operators, parts, error] = kit;
  const text = JSON.stringify(bundle) ?? "";
  if (/"op":"(before|after)"/.test(text)) Object.assign(operators, (await import("./parts/dates.js")).operators);
  if (/"op":"semver_/.test(text)) Object.assign(operators, (await import("./parts/semver.js")).operators);
  if (/"op":"matches"/.test(text)) Object.assign(operators, (await import("./parts/regex.js")).operators);
  if (Object.values(bundle?.flags ?? {}).some((f: any) => f?.prerequisites?.length)) parts.prerequisites ??= (await import("./parts/prerequisites.js")).prerequisites(kit);
  if (Object.keys(bundle?.experiments ?? {}).length) parts.experiment ??= (await import("./parts/experiments.js")).experiments(kit);
  if (consent && /"consent_required":true/.test(text)) parts.consent = (await import("./parts/consent.js")).counter;
  if (key) await (await import("./signature.js")).signatures(error).verifyBundle(bundle, key);
  return typeof bundle?.hash === "string" && bundle.hash === live?.hash;
}

/** Tell each listener of a new live bundle: its hash, the one before, the flags whose JSON changed. */
export function changed(previous: CompiledBundle | null, next: CompiledBundle, listeners: Set<(event: ChangeEvent) => void>, call: <T>(listener: (event: T) => void, event: T) => void): true {
  const a = previous?.raw.flags ?? {};
  const b = next.raw.flags ?? {};
  const flagsChanged = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
  for (const listener of [...listeners]) call(listener, { hash: next.hash, previousHash: previous?.hash ?? null, flagsChanged });
  return true;
}

const hidden = (): boolean => typeof document !== "undefined" && document.visibilityState === "hidden";

/** Poll `url` for `client` now and every `interval` ms (0: once; default the client's `pollInterval`, or 30 s); returns the function that stops. */
export function poll(client: Client, url: string, interval: number | undefined, refuse: (e: Error) => unknown, first: () => void, [, , BundleError]: Kit): () => void {
  const { headers, timeout = 10_000, fetch: fetchFn = globalThis.fetch, pollInterval = 30_000 } = client.options;
  interval ??= pollInterval;
  let etag: string | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let paused = false;
  let closed = false;
  const run = async (): Promise<void> => {
    // A server that accepts and never answers must not stop the polling.
    const abort = new AbortController();
    const deadline = setTimeout(() => abort.abort(`${url} did not answer within ${timeout} ms`), timeout);
    try {
      const response = await fetchFn(url, { headers: etag ? { ...headers, "If-None-Match": etag } : headers, signal: abort.signal });
      if (response.status === 304) return;
      if (!response.ok) return void refuse(new BundleError(`${url} answered HTTP ${response.status}`));
      // Remember the ETag only of a bundle that went live: a truncated transfer is fetched again.
      if (await client.load(await response.text())) etag = response.headers.get("ETag");
    } catch (e) {
      e = abort.signal.aborted ? abort.signal.reason : e;
      refuse(e instanceof Error ? e : new BundleError(String(e)));
    } finally {
      clearTimeout(deadline);
      first();
      if (!closed && interval > 0) {
        clearTimeout(timer);
        timer = setTimeout(() => (hidden() ? (paused = true) : run()), interval);
        (timer as { unref?: () => void }).unref?.();
      }
    }
  };
  const wake = (): void => {
    if (paused && !hidden()) {
      paused = false;
      void run();
    }
  };
  const events = typeof document === "undefined" ? null : document;
  events?.addEventListener("visibilitychange", wake);
  void run();
  return () => {
    closed = true;
    clearTimeout(timer);
    events?.removeEventListener("visibilitychange", wake);
  };
}
