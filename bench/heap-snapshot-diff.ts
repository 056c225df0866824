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

/** The kinds whose live count grew most from `before` to `after`. */
export function grownMost(before: HeapCounts, after: HeapCounts, top = 15): { kind: string; count: number; bytes: number }[] {
  return [...after]
    .map(([kind, a]) => ({ kind, count: a.count - (before.get(kind)?.count ?? 0), bytes: a.bytes - (before.get(kind)?.bytes ?? 0) }))
    .filter((d) => d.count > 0)
    .sort((x, y) => y.count - x.count)
    .slice(0, top);
}
