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
-- Every object below takes the window (from_ts <= ts < to_ts, UTC; both
-- required, so nothing lists the whole bucket by accident) and reads only
-- the objects under the window's hour, day, month or year directory:
--   fleet_samples(from_ts, to_ts), fleet_ticks(from_ts, to_ts)
--       the shipped rows of the window, with date, hour, host
--   fleet_top_waits(from_ts, to_ts)   off-CPU thread time of active threads
--       by host, container and pod, state and syscall, largest first:
--       waited_s is seconds of thread time, avg_threads that over the
--       window's length, share of all waiting in the window.
--   fleet_hosts(from_ts, to_ts)      per host: rows, sampled seconds, files
--   fleet_glob(table, from_ts, to_ts) the glob of the objects a window can
--       be in, for your own read_parquet(fleet_glob('samples', …), …)
-- They are table macros, not views: DuckDB binds a view when it is
-- created, which over a bucket lists every object and (with
-- union_by_name) reads every object's footer — minutes for a fleet.

SET VARIABLE taskscope_fleet = CASE
    WHEN getvariable('taskscope_fleet') IS NOT NULL
        THEN rtrim(getvariable('taskscope_fleet'), '/')
    ELSE error('taskscope-fleet.sql: set the bucket first: SET VARIABLE taskscope_fleet = ''s3://BUCKET/PREFIX''')
END;

-- The objects a window can be in, as one glob whose fixed part is as long
-- as the window allows: the hour's directory for a window inside one hour,
-- the day's inside one day, the month's, the year's, else every date. The
-- engine lists only the objects under that fixed part (a one-hour question
-- over a month of 1,000 hosts lists 1,000 objects, not 720,000); the
-- partition filter below then skips what the glob let through. A window
-- with no shipped object at all under that part is DuckDB's error "No files
-- found that match the pattern", naming the glob.
CREATE OR REPLACE TEMP MACRO fleet_glob(tbl, from_ts, to_ts) AS
    getvariable('taskscope_fleet') || '/' || tbl || '/' ||
    CASE
        WHEN CAST(to_ts AS TIMESTAMP) <= CAST(from_ts AS TIMESTAMP)
            THEN strftime(CAST(from_ts AS TIMESTAMP), 'date=%Y-%m-%d/hour=%H/')
        WHEN date_trunc('hour', CAST(from_ts AS TIMESTAMP))
             = date_trunc('hour', CAST(to_ts AS TIMESTAMP) - INTERVAL 1 MICROSECOND)
            THEN strftime(CAST(from_ts AS TIMESTAMP), 'date=%Y-%m-%d/hour=%H/')
        WHEN date_trunc('day', CAST(from_ts AS TIMESTAMP))
             = date_trunc('day', CAST(to_ts AS TIMESTAMP) - INTERVAL 1 MICROSECOND)
            THEN strftime(CAST(from_ts AS TIMESTAMP), 'date=%Y-%m-%d/hour=*/')
        WHEN date_trunc('month', CAST(from_ts AS TIMESTAMP))
             = date_trunc('month', CAST(to_ts AS TIMESTAMP) - INTERVAL 1 MICROSECOND)
            THEN strftime(CAST(from_ts AS TIMESTAMP), 'date=%Y-%m-*/hour=*/')
        WHEN date_trunc('year', CAST(from_ts AS TIMESTAMP))
             = date_trunc('year', CAST(to_ts AS TIMESTAMP) - INTERVAL 1 MICROSECOND)
            THEN strftime(CAST(from_ts AS TIMESTAMP), 'date=%Y-*/hour=*/')
        ELSE 'date=*/hour=*/'
    END || 'host=*/*.parquet';

-- The partitions a window touches: whole days, then whole hours.
CREATE OR REPLACE TEMP MACRO fleet_in_partitions(date, hour, from_ts, to_ts) AS
    date BETWEEN CAST(from_ts AS DATE) AND CAST(to_ts AS DATE)
    AND date + to_hours(hour) >= date_trunc('hour', CAST(from_ts AS TIMESTAMP))
    AND date + to_hours(hour) < CAST(to_ts AS TIMESTAMP);

-- The window's rows. The host partition is the shipping host's name (the
-- same as the files' host column); union_by_name reads files of older and
-- newer agents (a column a file lacks is NULL).
CREATE OR REPLACE TEMP MACRO fleet_samples(from_ts, to_ts) AS TABLE
FROM read_parquet(fleet_glob('samples', from_ts, to_ts),
                  hive_partitioning = true, union_by_name = true,
                  hive_types = {'date': DATE, 'hour': INTEGER, 'host': VARCHAR})
WHERE fleet_in_partitions(date, hour, from_ts, to_ts)
  AND ts >= CAST(from_ts AS TIMESTAMP) AND ts < CAST(to_ts AS TIMESTAMP);

CREATE OR REPLACE TEMP MACRO fleet_ticks(from_ts, to_ts) AS TABLE
FROM read_parquet(fleet_glob('ticks', from_ts, to_ts),
                  hive_partitioning = true, union_by_name = true, filename = true,
                  hive_types = {'date': DATE, 'hour': INTEGER, 'host': VARCHAR})
WHERE fleet_in_partitions(date, hour, from_ts, to_ts)
  AND ts >= CAST(from_ts AS TIMESTAMP) AND ts < CAST(to_ts AS TIMESTAMP);

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
FROM fleet_samples(from_ts, to_ts)
WHERE state IN ('RUNQUEUE', 'DISK', 'UNINTERRUPTIBLE', 'STOPPED', 'TRACED', 'NEW', 'FROZEN', 'RTLOCK_WAIT')
GROUP BY host, container_name, container_id, pod_namespace, pod_name, state, syscall
ORDER BY waited_s DESC, host, container_id, state, syscall;

CREATE OR REPLACE TEMP MACRO fleet_hosts(from_ts, to_ts) AS TABLE
SELECT host, count(*) AS ticks, round(sum(weight_us) / 1e6, 3) AS sampled_s,
       count(DISTINCT filename) AS files
FROM fleet_ticks(from_ts, to_ts)
GROUP BY host
ORDER BY host;
