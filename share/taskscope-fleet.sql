-- taskscope-fleet.sql: DuckDB views over the files many agents shipped to
-- object storage with `taskscope run --ship-to s3://BUCKET/PREFIX`.
--
-- The bucket holds PREFIX/<table>/date=YYYY-MM-DD/hour=HH/host=<host>/<file>;
-- these views read its Parquet files (ship Parquet: --format parquet) with
-- the hive partitions date DATE, hour INTEGER and host VARCHAR, so
-- `WHERE date = ... AND hour = ... AND host = ...` skips whole objects.
--
-- Start DuckDB with the httpfs extension and an S3 secret, then this file:
--
--   duckdb -cmd "CREATE SECRET (TYPE s3, PROVIDER credential_chain)" \
--          -cmd "SET VARIABLE taskscope_fleet = 's3://fleet/agents'" \
--          -cmd ".read /usr/share/taskscope/taskscope-fleet.sql"
--
-- (The same from Python: con.execute("SET VARIABLE …"), then the file's
-- text. For another S3-compatible
-- store: CREATE SECRET (TYPE s3, KEY_ID '…', SECRET '…', ENDPOINT
-- 'host:port', URL_STYLE 'path', USE_SSL false). A local copy of the
-- bucket works as well: SET VARIABLE taskscope_fleet = '/srv/fleet/agents'.)
--
-- Views:
--   fleet_samples, fleet_ticks     every shipped row, with date, hour, host
-- Named queries (from_ts <= ts < to_ts, UTC; both required, so a query
-- never lists the whole bucket by accident):
--   fleet_top_waits(from_ts, to_ts)   off-CPU thread time of active threads
--       by host, container and pod, state and syscall, largest first:
--       waited_s is seconds of thread time, avg_threads that over the
--       window's length, share of all waiting in the window.
--   fleet_hosts(from_ts, to_ts)      per host: rows, sampled seconds, files

SET VARIABLE taskscope_fleet = CASE
    WHEN getvariable('taskscope_fleet') IS NOT NULL
        THEN rtrim(getvariable('taskscope_fleet'), '/')
    ELSE error('taskscope-fleet.sql: set the bucket first: SET VARIABLE taskscope_fleet = ''s3://BUCKET/PREFIX''')
END;

-- The host partition is the shipping host's name (the same as the files'
-- host column); union_by_name reads files of older and newer agents (a
-- column a file lacks is NULL).
CREATE OR REPLACE TEMP VIEW fleet_samples AS
FROM read_parquet(getvariable('taskscope_fleet') || '/samples/date=*/hour=*/host=*/*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'date': DATE, 'hour': INTEGER, 'host': VARCHAR});

CREATE OR REPLACE TEMP VIEW fleet_ticks AS
FROM read_parquet(getvariable('taskscope_fleet') || '/ticks/date=*/hour=*/host=*/*.parquet',
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'date': DATE, 'hour': INTEGER, 'host': VARCHAR});

-- The partitions a window touches: whole days, then whole hours.
CREATE OR REPLACE TEMP MACRO fleet_in_partitions(date, hour, from_ts, to_ts) AS
    date BETWEEN CAST(from_ts AS DATE) AND CAST(to_ts AS DATE)
    AND date + to_hours(hour) >= date_trunc('hour', CAST(from_ts AS TIMESTAMP))
    AND date + to_hours(hour) < CAST(to_ts AS TIMESTAMP);

CREATE OR REPLACE TEMP MACRO fleet_top_waits(from_ts, to_ts) AS TABLE
SELECT host,
       coalesce(container_name, '') AS container_name,
       coalesce(container_id, '') AS container_id,
       coalesce(pod_namespace, '') AS pod_namespace,
       coalesce(pod_name, '') AS pod_name,
       state,
       coalesce(syscall, '') AS syscall,
       count(DISTINCT tid) AS threads,
       round(sum(weight_us) / 1e6, 3) AS waited_s,
       round(sum(weight_us) / any_value(epoch_us(CAST(to_ts AS TIMESTAMP) - CAST(from_ts AS TIMESTAMP))), 3) AS avg_threads,
       round(sum(weight_us) / sum(sum(weight_us)) OVER (), 4) AS share
FROM fleet_samples
WHERE fleet_in_partitions(date, hour, from_ts, to_ts)
  AND ts >= CAST(from_ts AS TIMESTAMP) AND ts < CAST(to_ts AS TIMESTAMP)
  AND state IN ('RUNQUEUE', 'DISK', 'UNINTERRUPTIBLE', 'STOPPED', 'TRACED', 'NEW', 'FROZEN', 'RTLOCK_WAIT')
GROUP BY host, container_name, container_id, pod_namespace, pod_name, state, syscall
ORDER BY waited_s DESC, host, container_id, state, syscall;

CREATE OR REPLACE TEMP MACRO fleet_hosts(from_ts, to_ts) AS TABLE
SELECT host, count(*) AS ticks, round(sum(weight_us) / 1e6, 3) AS sampled_s,
       count(DISTINCT filename) AS files
FROM read_parquet(getvariable('taskscope_fleet') || '/ticks/date=*/hour=*/host=*/*.parquet',
                  hive_partitioning = true, union_by_name = true, filename = true,
                  hive_types = {'date': DATE, 'hour': INTEGER, 'host': VARCHAR})
WHERE fleet_in_partitions(date, hour, from_ts, to_ts)
  AND ts >= CAST(from_ts AS TIMESTAMP) AND ts < CAST(to_ts AS TIMESTAMP)
GROUP BY host
ORDER BY host;
