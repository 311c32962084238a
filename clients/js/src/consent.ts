/**
 * `import "@flagstone/client/consent"`: adds the consent counts (parts/consent.ts) to the
 * core, so a client with `onConsentNotGiven` loads bundles whose experiments require consent
 * synchronously (`new Client({ bundle })`, SSR).
 */
import { parts } from "./evaluate.js";
import { counter } from "./parts/consent.js";

parts.consent = counter;
