import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO } from "./vectors.js";

// `flagstone codegen --lang ts` run for real on a copy of this repository's own example,
// and a sample React app type-checked against what it writes.
const python = process.env.FLAGSTONE_PYTHON ?? join(REPO, ".venv", "bin", "python");
const work = mkdtempSync(join(process.cwd(), ".codegen-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const repo = join(work, "repo");
for (const part of ["flagstone.yaml", "schemas", "environments"]) cpSync(join(REPO, part), join(repo, part), { recursive: true });

const app = join(work, "app");
const codegen = (): void => void execFileSync(python, ["-m", "flagstone", "codegen", "--lang", "ts", "--out", join(app, "flags.generated.ts")], { cwd: repo, stdio: "pipe" });
writeFileSync(
  join(work, "tsconfig.json"),
  JSON.stringify({
    extends: "../tsconfig.json",
    compilerOptions: { noEmit: true, paths: { "@flagstone/client": ["../src/index.ts"], "@flagstone/client/react": ["../src/react.tsx"], "@flagstone/client/*": ["../src/*.ts"] }, noUncheckedSideEffectImports: true },
    include: ["app"],
    exclude: [],
  }),
);
cpSync(join(process.cwd(), "test", "codegen-sample"), app, { recursive: true });
const typecheck = (): { status: number | null; output: string } => {
  const r = spawnSync(join(process.cwd(), "node_modules", ".bin", "tsc"), ["-p", join(work, "tsconfig.json")], { encoding: "utf8" });
  return { status: r.status, output: r.stdout + r.stderr };
};

/** Delete the top-level block of `key` from every environment's flags.yaml. */
function removeFlag(key: string): void {
  for (const env of readdirSync(join(repo, "environments"))) {
    const path = join(repo, "environments", env, "flags.yaml");
    writeFileSync(path, readFileSync(path, "utf8").replace(new RegExp(`^${key}:\\n[\\s\\S]*?(?=^\\S|(?![\\s\\S]))`, "m"), ""));
  }
}

describe("flagstone codegen --lang ts", () => {
  it("a sample app type-checks against the generated code, and removing a flag it uses breaks the check", () => {
    codegen();
    // The example's bundles use dates, semver and consent: the generated file imports those parts.
    expect(readFileSync(join(app, "flags.generated.ts"), "utf8")).toMatch(/^import "@flagstone\/client\/consent";\nimport "@flagstone\/client\/dates";\nimport "@flagstone\/client\/experiments";\nimport "@flagstone\/client\/prerequisites";\nimport "@flagstone\/client\/semver";$/m);
    expect(typecheck()).toEqual({ status: 0, output: "" });
    removeFlag("graph-renderer");
    codegen();
    const broken = typecheck();
    expect(broken.status).not.toBe(0);
    expect(broken.output).toMatch(/"graph-renderer"/);
    expect(broken.output).toMatch(/Property 'graphRenderer' does not exist/);
  });
});
