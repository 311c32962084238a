/**
 * `import "@flagstone/client/semver"`: adds the `semver_*` operators (parts/semver.ts) to the
 * core, so bundles that use them load synchronously (`new Client({ bundle })`, SSR).
 */
import { OPERATORS } from "./operators.js";
import { operators } from "./parts/semver.js";

Object.assign(OPERATORS, operators);
