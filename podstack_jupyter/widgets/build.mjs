// Bundles the widgets' TypeScript (and uPlot) into one offline ESM file plus its CSS:
//   podstack_jupyter/widgets/static/widgets.{js,css}
// anywidget loads that file from the installed package; nothing is fetched at run time.
// Run by the hatch build hook (pyproject.toml) on `pip install`; by hand: `npm run build`.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const dev = process.argv.includes("--dev");
const options = {
  entryPoints: { widgets: path.join(here, "index.ts") },
  outdir: path.join(here, "static"),
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: "eof", // uPlot's MIT notice travels with the bundle
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const context = await esbuild.context(options);
  await context.watch();
} else {
  await esbuild.build(options);
}
