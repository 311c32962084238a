/**
 * `import "@flagstone/client/dates"`: adds the `before` and `after` operators (parts/dates.ts)
 * to the core, so bundles that use them load synchronously (`new Client({ bundle })`, SSR).
 */
import { OPERATORS } from "./operators.js";
import { operators } from "./parts/dates.js";

Object.assign(OPERATORS, operators);
