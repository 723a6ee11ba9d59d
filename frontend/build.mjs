// Bundles the in-page recorder and the viewer from npm packages into dist/.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
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

// The viewer, split: the recording player (playback.js, imported on first use) is a chunk
// of its own, so the live path loads none of it. Code both use (rrweb) is a shared chunk.
await rm(join(dist, "chunks"), { recursive: true, force: true });
await build({
  ...common,
  entryPoints: { viewer: join(root, "src/viewer/main.js") },
  outdir: dist,
  format: "esm",
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
});
await build({ ...common, entryPoints: [join(root, "src/viewer/viewer.css")], outfile: join(dist, "viewer.css") });
await copyFile(join(root, "src/viewer/index.html"), join(dist, "index.html"));

// The page exports are rendered from (pipeline/export/renderer.py): dist/export/.
await mkdir(join(dist, "export"), { recursive: true });
await build({ ...common, entryPoints: [join(root, "src/export/main.js")], outfile: join(dist, "export/export.js"), format: "esm" });
await build({ ...common, entryPoints: [join(root, "src/export/export.css")], outfile: join(dist, "export/export.css") });
await copyFile(join(root, "src/export/index.html"), join(dist, "export/index.html"));
