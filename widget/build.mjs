// Builds the embeddable widget: widget/src/main.ts → dist/widget.js (one minified IIFE,
// no dependencies). Run from anywhere: `node widget/build.mjs`.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

await build({
  absWorkingDir: root,
  entryPoints: ["widget/src/main.ts"],
  outfile: "dist/widget.js",
  bundle: true,
  minify: true,
  format: "iife",
  // ES2019 still covers the long tail of embedded browsers (older Safari, in-app
  // webviews) the host sites' visitors use; newer syntax is lowered by esbuild.
  target: "es2019",
  legalComments: "none",
  logLevel: "warning",
});
