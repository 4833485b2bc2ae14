// Step 1 of the lab extension's build: bundle src/index.ts with the widget views it shares
// (../podstack_jupyter/widgets: sessions panel, metrics chart, helpers, CSS, uPlot) into
// lib/index.{js,css}. JupyterLab's own packages stay imports: step 2 (@jupyter/builder, rspack,
// `npm run build`) turns lib/ into the prebuilt extension in ../podstack_jupyter/labextension,
// sharing them with JupyterLab at run time.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const dev = process.argv.includes("--dev");
await esbuild.build({
  entryPoints: { index: path.join(here, "src", "index.ts") },
  outdir: path.join(here, "lib"),
  bundle: true,
  format: "esm",
  target: "es2020",
  external: ["@jupyterlab/*", "@lumino/*"],
  // uPlot is a dependency of the widgets (the repository's package.json), found in ../node_modules
  nodePaths: [path.join(here, "..", "node_modules")],
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: "eof",
  logLevel: "info",
});
