// Bundles the in-page recorder and the viewer from npm packages into dist/.
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
// `node build.mjs [OUTDIR]`: dist/ by default.
const dist = process.argv[2] ? resolve(process.argv[2]) : join(root, "dist");
await mkdir(dist, { recursive: true });

const common = { bundle: true, minify: true, sourcemap: false, target: ["chrome110", "firefox110", "safari16"], logLevel: "warning" };

// Injected into every frame by the session actor: must be a self-contained IIFE.
await build({ ...common, entryPoints: [join(root, "src/recorder.js")], outfile: join(dist, "recorder.js"), format: "iife" });
// Injected beside it: keeps a page's dialogs and popups from costing the session anything.
await build({ ...common, entryPoints: [join(root, "src/guard.js")], outfile: join(dist, "guard.js"), format: "iife" });

await build({ ...common, entryPoints: [join(root, "src/viewer/main.js")], outfile: join(dist, "viewer.js"), format: "esm" });
await build({ ...common, entryPoints: [join(root, "src/viewer/viewer.css")], outfile: join(dist, "viewer.css") });
await copyFile(join(root, "src/viewer/index.html"), join(dist, "index.html"));
