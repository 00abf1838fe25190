"""`exposure-client notify`: the insurer's notices and the report for its DPO.

Made on the insurer's machine from its member file and the results of `check`:
e-mails (.eml), PDF letters merged per batch, a review list for `similar` matches,
an error list and a report (docs/design.md §5). It never opens a network
connection, writes every file mode 0600, and logs counts only, never a ref, a name
or an address.
"""
