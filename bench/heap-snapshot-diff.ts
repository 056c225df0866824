import { readFile } from "node:fs/promises";

/**
 * Live objects of a V8 heap snapshot (`.heapsnapshot`, as DevTools writes it) counted by
 * kind and constructor, and the difference between two snapshots: what a leak leaves behind
 * shows as counts that grow with the churn (e.g. one more `Object` and `string` per visitor
 * gone). The format: a flat `nodes` array, `node_fields.length` numbers per node, whose
 * `type` indexes `node_types[0]` and `name` indexes `strings`.
 */
interface HeapSnapshotFile {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export type HeapCounts = Map<string, { count: number; bytes: number }>;

export async function countHeapObjects(file: string): Promise<HeapCounts> {
  const heap = JSON.parse(await readFile(file, "utf8")) as HeapSnapshotFile;
  const fields = heap.snapshot.meta.node_fields;
  const types = heap.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = [fields.indexOf("type"), fields.indexOf("name"), fields.indexOf("self_size")];
  const counts: HeapCounts = new Map();
  for (let i = 0; i < heap.nodes.length; i += fields.length) {
    const type = types[heap.nodes[i + typeAt]!]!;
    // Strings, numbers and code by kind only: their "names" are their contents.
    const key = type === "object" || type === "closure" || type === "native" ? `${type} ${heap.strings[heap.nodes[i + nameAt]!]}` : type;
    const entry = counts.get(key) ?? { count: 0, bytes: 0 };
    entry.count += 1;
    entry.bytes += heap.nodes[i + sizeAt]!;
    counts.set(key, entry);
  }
  return counts;
}

/**
 * The kinds whose live objects grew most, in bytes, from `before` to `after` (with the
 * change in their count); `code` is V8 compiling more of the bridge, not a leak.
 */
export function grownMost(before: HeapCounts, after: HeapCounts, top = 12): { kind: string; count: number; bytes: number }[] {
  const kinds = new Set([...before.keys(), ...after.keys()]);
  return [...kinds]
    .map((kind) => ({ kind, count: (after.get(kind)?.count ?? 0) - (before.get(kind)?.count ?? 0), bytes: (after.get(kind)?.bytes ?? 0) - (before.get(kind)?.bytes ?? 0) }))
    .filter((d) => d.bytes > 0)
    .sort((x, y) => y.bytes - x.bytes)
    .slice(0, top);
}

/** Bytes of all live objects, `code` apart. */
export function totalBytes(counts: HeapCounts): { code: number; other: number } {
  let code = 0;
  let other = 0;
  for (const [kind, { bytes }] of counts) {
    if (kind === "code") code += bytes;
    else other += bytes;
  }
  return { code, other };
}
