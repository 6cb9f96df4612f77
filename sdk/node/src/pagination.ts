/**
 * Walking a cursor-paged list to its end, written once (the Python SDK's `client/_pagination.py`
 * has the same rule): the walk ends at a page without rows or without a `next_cursor`.
 */
export async function* cursorRows<P extends { next_cursor?: string | null }, R>(
  fetchPage: (cursor: string | undefined) => Promise<P>,
  rows: (page: P) => readonly R[],
): AsyncGenerator<R> {
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    const items = rows(page);
    yield* items;
    if (items.length === 0 || !page.next_cursor) return;
    cursor = page.next_cursor;
  }
}
