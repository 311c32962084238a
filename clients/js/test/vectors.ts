import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The shared vectors the Python runtime is held to (tests/conformance/). */
export const CONFORMANCE = fileURLToPath(new URL("../../../tests/conformance/", import.meta.url));
export const readVectors = (name: string): any => JSON.parse(readFileSync(CONFORMANCE + name, "utf8"));
export const vectorFiles = (): string[] => readdirSync(CONFORMANCE).filter((f) => f.endsWith(".json"));
