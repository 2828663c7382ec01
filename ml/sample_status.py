"""One vocabulary for where a sample stands, from the catalog to the splits.

Every prepare table (catalog, verification_report, resized, splits) has the same three columns:

- `status`: `ok`, `missing` (no file, or no such member), `corrupt` (the bytes are not a usable
  image: unreadable header, failed decode, changed since first seen, failed resize) or
  `invalid` (an identifier or path that is never opened: it leaves the images folder, or is
  empty);
- `reason`: the fine-grained word behind a bad status (ml.imageio's REASONS, 'invalid path',
  'changed since last seen', ...), '' when ok;
- `dropped_by`: '' while the sample goes on, else the first stage that stopped it
  (STAGES below). A later stage keeps the rows it was given that are still going on and adds
  its own columns, so the last table answers "where did my sample go, and why" on one row.

A sample the dataset does not use (`used` false: seed 000's partial levels) is not dropped;
it is excluded by definition and keeps `dropped_by` ''.
"""

from __future__ import annotations

OK, MISSING, CORRUPT, INVALID = "ok", "missing", "corrupt", "invalid"
STATUSES = (OK, MISSING, CORRUPT, INVALID)

CATALOG, VERIFICATION, RESIZE = "catalog", "verification_report", "resized"
STAGES = (CATALOG, VERIFICATION, RESIZE)
