import { defineConfig } from "vite";

// Library mode: one ES module per entry point; React and the OpenFeature SDK stay peers.
export default defineConfig({
  build: {
    lib: {
      entry: { index: "src/index.ts", full: "src/full.ts", dates: "src/dates.ts", semver: "src/semver.ts", regex: "src/regex.ts", experiments: "src/experiments.ts", prerequisites: "src/prerequisites.ts", consent: "src/consent.ts", react: "src/react.tsx", openfeature: "src/openfeature.ts", verify: "src/verify.ts" },
      formats: ["es"],
    },
    rollupOptions: { external: [/^react($|\/)/, /^@openfeature\//] },
    target: "es2022",
    minify: true,
    sourcemap: true,
  },
});
