/** Selection of the k values of a row that come first in an order, without sorting the row. */

/**
 * The indices of the k values of `row` that come first under `before` (ties: the lower index
 * first), in that order, among the indices `keep` accepts (all by default).
 */
export function extremes(row: ArrayLike<number>, k: number, before: (a: number, b: number) => boolean, keep?: (index: number) => boolean): number[] {
  const ids: number[] = [];
  for (let v = 0; v < row.length; v++) {
    if (keep && !keep(v)) continue;
    if (ids.length === k && !before(row[v]!, row[ids[k - 1]!]!)) continue;
    let at = ids.length === k ? k - 1 : ids.length;
    while (at > 0 && before(row[v]!, row[ids[at - 1]!]!)) at -= 1;
    ids.splice(at, 0, v);
    if (ids.length > k) ids.pop();
  }
  return ids;
}
