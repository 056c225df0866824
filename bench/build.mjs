// Bundles the bench (TypeScript) into .tmp/bench/*.mjs with esbuild. npm packages stay
// external; the bridge-process' imports of ../bridge/*.js resolve to the tsc build in
// dist/bridge (run `npm run build` first), so the bridge under test is the shipped JS.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join, resolve } from "node:path";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, ".tmp", "bench");

const useDistBridge = {
  name: "dist-bridge",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/bridge\// }, (args) => ({ path: join(root, "dist", "bridge", args.path.slice("../bridge/".length)), external: true }));
  },
};
// test/support/leftovers.ts registers a vitest hook when run under vitest; the bench is not.
const noVitest = {
  name: "no-vitest",
  setup(b) {
    b.onResolve({ filter: /^vitest$/ }, () => ({ path: "vitest", namespace: "stub" }));
    b.onLoad({ filter: /.*/, namespace: "stub" }, () => ({ contents: "export const afterAll = () => {};", loader: "js" }));
  },
};

const common = { bundle: true, platform: "node", format: "esm", target: "node20", packages: "external", sourcemap: true, logLevel: "warning" };
await build({ ...common, entryPoints: [join(root, "bench", "bridge-process.ts")], outfile: join(out, "bridge-process.mjs"), plugins: [useDistBridge] });
await build({ ...common, entryPoints: [join(root, "bench", "main.ts")], outfile: join(out, "main.mjs"), plugins: [noVitest] });
await build({ ...common, entryPoints: [join(root, "bench", "soak.ts")], outfile: join(out, "soak.mjs"), plugins: [noVitest] });
