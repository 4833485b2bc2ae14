// Bundles the server's dashboard (main.ts, the widgets' views and uPlot it reuses, their CSS) into
//   podstack_jupyter/server/dashboard/static/dashboard.{js,css}
// served by `podstack server` at / (routers/dashboard.py); nothing is fetched at run time.
// Run by the hatch build hook (pyproject.toml, `npm run build`) on `pip install`.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const dev = process.argv.includes("--dev");
await esbuild.build({
  entryPoints: { dashboard: path.join(here, "main.ts") },
  outdir: path.join(here, "static"),
  bundle: true,
  format: "esm",
  target: "es2020",
  // uPlot is a dependency of the widgets (the repository's package.json), found in its node_modules
  nodePaths: [path.join(here, "..", "..", "..", "node_modules")],
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: "eof", // uPlot's MIT notice travels with the bundle
  logLevel: "info",
});
