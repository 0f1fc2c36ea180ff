"""The use cases of `SecretsLedger`, one concern per module, each made of the unit of work's
operations (ledger/unit_of_work.py): `secrets` (read and change a secret, the write path),
`operators` (grants, sessions), `integrity` (checkpoints, verification, doctor), `keys`
(the fingerprint key between hosts), `maintenance` (store pages and indexes)."""
