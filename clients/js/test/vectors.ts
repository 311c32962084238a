import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// happy-dom gives import.meta.url an http: scheme; the working directory is clients/js.
const here = import.meta.url.startsWith("file:") ? dirname(fileURLToPath(import.meta.url)) : join(process.cwd(), "test");
export const REPO = join(here, "..", "..", "..");
/** The shared vectors the Python runtime is held to (tests/conformance/). */
export const CONFORMANCE = join(REPO, "tests", "conformance");
export const readVectors = (name: string): any => JSON.parse(readFileSync(join(CONFORMANCE, name), "utf8"));
