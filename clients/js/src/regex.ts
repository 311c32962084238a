/**
 * `import "@flagstone/client/regex"`: adds the `matches` operator (parts/regex.ts) to the
 * core, so bundles that use it load synchronously (`new Client({ bundle })`, SSR).
 */
import { OPERATORS } from "./operators.js";
import { operators } from "./parts/regex.js";

Object.assign(OPERATORS, operators);
