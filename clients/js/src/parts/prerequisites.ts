/**
 * Prerequisites, exactly the Python runtime's: a flag serves its off variant
 * (PREREQUISITE_FAILED, naming the prerequisite) unless each flag it depends on evaluates to
 * one of the listed variants; a chain deeper than 32 answers ERROR. A part of its own:
 * `import "@flagstone/client/prerequisites"` (or `@flagstone/client/full`) adds it to the
 * core, and `Client.load` or a URL add it when a bundle's flags have prerequisites. No module
 * of the core is imported here (what it needs is handed in, `kit`), so the core stays one chunk.
 */
import type { CompiledFlag, Kit } from "../evaluate.js";
import type { Context } from "../operators.js";

export const MAX_PREREQUISITE_DEPTH = 32;

/**
 * The prerequisites compiler, made once from what the core hands in. A compiled check
 * answers the flag's outcome when a prerequisite fails, and undefined when all hold.
 */
export function prerequisites([, , BundleError, , , , get, , , , , done]: Kit) {
  return (list: any[], flags: Map<string, CompiledFlag>, off: string | null, known: object) => {
    const checks: [string, Set<string>][] = list.map((p) => {
      if (get(known, p.flag) === undefined) throw new BundleError(`unknown prerequisite ${p.flag}`);
      return [p.flag, new Set(p.variants)];
    });
    return (ctx: Context, depth: number): string | null | undefined => {
      if (depth >= MAX_PREREQUISITE_DEPTH) return done(null, "ERROR", "prerequisites nest too deeply");
      for (const [key, allowed] of checks) {
        const v = flags.get(key)!.evaluate(ctx, depth + 1);
        if (v === null || !allowed.has(v)) return done(off, "PREREQUISITE_FAILED", key);
      }
    };
  };
}
