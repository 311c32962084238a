/**
 * `import "@flagstone/client/experiments"`: adds experiments (parts/experiments.ts: assignment
 * with layers, traffic, audience and consent, and exposure records) to the core, so bundles
 * that hold experiments load synchronously (`new Client({ bundle })`, SSR).
 */
import { kit, parts } from "./evaluate.js";
import { experiments } from "./parts/experiments.js";

parts.experiment ??= experiments(kit);
