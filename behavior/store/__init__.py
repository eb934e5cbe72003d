"""The one corner of behavior that touches files: the formats the batch and serving sides share.

`pipelines` writes them and `api` reads them (the API never imports pipelines), so each
format has its one definition here: the file's place in the data home, its content, its
writer and its reader.

    datahome     `DataHome`: the data home's layout (the only place that knows it) and its lock
    bundle       the bundle's catalogue of artifacts, its writer, `verify`, CURRENT (`set_current`)
                 and erasure from every per-user artifact (`without_users`)
    erasure_log  who was erased, by keyed hash (`erasure.key`, `erasure_log.jsonl`)
    keys         the API keys file (`api_keys.json`, SHA-256 of each key and its scopes)
    atomic       the crash-safe write every format uses
    opt_outs     the users whose latest ingested `users` row opts them out of marketing, by
                 keyed hash (`opt_outs.json`), so an opt-out holds in the API before the next run
    senders      the systems that send signed payment notifications (`senders.json`)
    inbox        acknowledged payment notifications not yet in the lake (`inbox/`, SQLite WAL)
    experiments  a promotion and its arms, read from the lake for the live view
"""
