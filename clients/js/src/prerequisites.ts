/**
 * `import "@flagstone/client/prerequisites"`: adds prerequisites (parts/prerequisites.ts) to
 * the core, so bundles whose flags depend on other flags load synchronously
 * (`new Client({ bundle })`, SSR).
 */
import { kit, parts } from "./evaluate.js";
import { prerequisites } from "./parts/prerequisites.js";

parts.prerequisites ??= prerequisites(kit);
