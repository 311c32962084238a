/**
 * The consent counts: how many units each `consent: required` experiment left out for
 * lacking consent, handed to `onConsentNotGiven` in batches (docs/runtime.md, Analytics).
 * A part of its own: `import "@flagstone/client/consent"` (or `@flagstone/client/full`)
 * adds it to the core, and `Client.load` or a URL add it when a bundle needs it. No module
 * of the core is imported here, so the core stays one chunk.
 */
import type { ConsentNotGiven } from "../client.js";

/** Count one unit (the signature of evaluate.ts's OnRefusal), and hand the counts over now. */
export type Counter = [count: (experiment: string, unit: string, flag: string, environment: string | null) => void, flush: () => void];

/**
 * Units left out for lacking consent, counted once per experiment; who was counted stays in
 * memory only (at most 100,000 units, then it starts over), the counts carry no id.
 * `deliver` calls the app's callback, reporting what it throws.
 */
export function counter(deliver: (counts: ConsentNotGiven[]) => void, flushInterval = 10_000): Counter {
  let counted = new Set<string>();
  let counts: Record<string, Omit<ConsentNotGiven, "from" | "to">> = {};
  let since = Date.now() / 1000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = (): void => {
    clearTimeout(timer);
    timer = undefined;
    const to = Date.now() / 1000;
    const batch = Object.keys(counts)
      .sort()
      .map((k) => ({ ...counts[k], from: since, to }));
    counts = {};
    since = to;
    if (batch.length) deliver(batch);
  };
  const count = (experiment: string, unit: string, flag: string, environment: string | null): void => {
    const key = JSON.stringify([experiment, flag, environment]);
    if (counted.has(key + unit)) return;
    if (counted.size >= 100_000) counted = new Set();
    counted.add(key + unit);
    (counts[key] ??= { type: "consent_not_given", experiment, flag, environment, units: 0 }).units++;
    // unref: a pending batch does not keep a Node process alive (close() hands it over).
    (timer ??= setTimeout(flush, flushInterval) as any).unref?.();
  };
  return [count, flush];
}
