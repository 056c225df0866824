import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "./config.js";
import { sitesFileSchema, type SitesFile } from "./site-schema.js";

/**
 * PARLEY_SITES_FILE, read and validated before anything in it is applied. Every problem is
 * a ConfigError of one line naming the variable, like the environment's (CONTRACT §2): the
 * YAML parser's own message spans several lines and quotes the offending line, which may
 * hold a webhook secret, so only its first line (what and where) is kept.
 */
export async function readSitesFile(path: string): Promise<SitesFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw sitesFileError(path, ` ${whyUnreadable(err)}`);
  }
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (err) {
    const first = (err instanceof Error ? err.message : String(err)).split("\n")[0]!.replace(/:$/, "");
    throw sitesFileError(path, ` is not valid YAML: ${first}`);
  }
  const parsed = sitesFileSchema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join(".");
    throw sitesFileError(path, `: ${where ? `${where}: ` : ""}${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

function sitesFileError(path: string, problem: string): ConfigError {
  return new ConfigError(`invalid configuration: PARLEY_SITES_FILE ${path}${problem}`);
}

function whyUnreadable(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case "ENOENT":
      return "does not exist";
    case "EACCES":
      return "cannot be read (permission denied)";
    case "EISDIR":
      return "is a directory, not a YAML file";
    default:
      return `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err))})`;
  }
}
