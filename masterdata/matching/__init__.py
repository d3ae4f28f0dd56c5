"""Record matching: which records are one organisation.

The pipeline, one module each:

- ``normalize``: a record's fields as comparable parts (the name split into its
  organisation parts and weighted tokens, the street address parsed into house number or
  range, direction, street name, type and unit, the phone's digits, the postcode).
- ``blocking``: several passes (tax id, domain, phone, e-mail, house number + street name,
  rare name tokens, postcode + name prefix, a sorted neighbourhood of names) whose union
  is compared once.
- ``compare``: each field of a pair graded to a comparison level (same, close,
  contained, partial, different), or missing, which says nothing.
- ``model``: Fellegi-Sunter weights: u probabilities measured on random pairs and value
  frequencies, m probabilities and the share of matches learned by EM on the records
  themselves, term-frequency adjustment of exact agreements; the evidence per field.
- ``clusters``: pairs grouped into connected components that are checked to hold
  together, and the "sites of one organisation" pattern.
- ``files``: the same pipeline over a CSV file (``manage.py match_records``, the console's
  upload page).
"""
