import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * Parley's own folder and version, found from the sources (bridge/) or the build
 * (dist/bridge/), so that assets and package.json resolve the same way in both.
 */
function findRoot(): { dir: string; version: string } {
  for (const relative of ["../", "../../"]) {
    const dir = new URL(relative, import.meta.url);
    try {
      const pkg = JSON.parse(readFileSync(new URL("package.json", dir), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "parley") return { dir: fileURLToPath(dir), version: pkg.version ?? "unknown" };
    } catch {
      // not at this level
    }
  }
  return { dir: fileURLToPath(new URL("../", import.meta.url)), version: "unknown" };
}

export const packageRoot = findRoot();
