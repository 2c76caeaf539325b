"""Tally's Airflow provider: the `tally` connection type, `TallyHook`, `TallySqlOperator` and
`TallyRefreshOperator`. Airflow finds it through the `apache_airflow_provider` entry point."""


def get_provider_info() -> dict:
    return {
        "package-name": "tally-client",
        "name": "Tally",
        "description": "Run SQL and refresh materialized views on a Tally cluster.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "tally",
                "hook-class-name": "tally_client.airflow.hooks.TallyHook",
            }
        ],
    }
