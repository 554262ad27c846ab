-- taskscope.sql: DuckDB views and named queries over taskscope's data files.
--
-- Start DuckDB with it, pointed at a data directory (the agent's --output-dir):
--
--   cd /var/lib/taskscope && duckdb -init /usr/share/taskscope/taskscope.sql
--   TASKSCOPE_DIR=/var/lib/taskscope duckdb -init /usr/share/taskscope/taskscope.sql
--   duckdb -cmd "SET VARIABLE taskscope_dir = '/srv/taskscope'" \
--          -cmd ".read /usr/share/taskscope/taskscope.sql"
--
-- The directory is the variable taskscope_dir if set, else $TASKSCOPE_DIR,
-- else the current directory. The file format is the variable
-- taskscope_format (or $TASKSCOPE_FORMAT): 'auto' (the default), 'csv' or
-- 'parquet'. In an open session, SET VARIABLE one of them and `.read` this
-- file again to switch.
--
-- Views (one per table, columns as `taskscope schema` prints them, plus the
-- hive partition columns date DATE and hour INTEGER; `WHERE date >= ...`
-- skips whole files):
--   samples, ticks, syscalls, iorq   the rows of every period
--   stacks                           one row per stack_id (periods repeat ids)
--   taskscope_sources                what each view reads, and how
--   taskscope_tables                 the tables' columns and types
-- Named queries (table macros; from_ts/to_ts are optional UTC bounds,
-- from_ts <= ts < to_ts; ago('1 hour') is the UTC time an hour ago; those
-- that average threads count active ones unless all_states := true):
--   top_activity(from_ts, to_ts, all_states)  average active threads by wait_class, state, comm, syscall, kfunc
--   top_waits(from_ts, to_ts, all_states)     off-CPU time by state, syscall, kfunc
--   top_blockers(from_ts, to_ts)              threads others wait for, and what they did meanwhile
--   active_threads(bucket, from_ts, to_ts, all_states) average active threads per bucket and state
--   top_stacks(kind, from_ts, to_ts, all_states) sampled time per kernel or user stack, with frames
--   top_syscalls(from_ts, to_ts, all_states)  sampled time in each syscall, and recorded latencies
--   latency_summary(from_ts, to_ts, pid)  count, avg, p50/p95/p99/max of recorded syscalls and I/O
--   latency_histogram(from_ts, to_ts, pid) the same as log2 histograms (pid: one process only)
-- Scalar macros: taskscope_frames_of_kind(frames, frame_kinds, kind) keeps
-- the frames of one kind ('native', 'kernel', 'jit', 'python').
--
-- "Average active threads" is the Active-Session-History measure: every
-- sample row stands for weight_us of one thread's time, so the sum of
-- weight_us over a group, divided by the time the agent sampled (the sum of
-- ticks.weight_us in the window), is how many threads were in that group on
-- average. Active threads are those taskscope_active(state) accepts (on a
-- CPU, runnable, in disk or other uninterruptible waits, stopped, traced):
-- what the agent writes without --all, and what `taskscope report` counts.
-- With --all the files also hold sleeping and idle threads; the queries
-- count them only with all_states := true.
--
-- The period being written is not read: it lives in <dir>/.inprogress as a
-- zstd stream that ends in an unfinished block, which DuckDB cannot read.
-- It appears here once published (every --rotate, or at once on SIGHUP:
-- systemctl reload taskscope); `taskscope report` reads it up to its last
-- complete tick.
--
-- How the views are built, and why:
--  * DuckDB fails a query when a glob matches no file ("No files found that
--    match the pattern"), and DuckDB 1.5 has no option to read such a glob
--    as an empty table; yet tables do go missing (no --track: no syscalls or
--    iorq files; a fresh directory: nothing yet). So this script lists the
--    files once, when it is read, and writes each view's SELECT as text: a
--    read over the table's glob when it has files, else a typed empty
--    SELECT. The views run that text with query(). Globs are expanded again
--    by every query, so new files of a table that had files are always seen;
--    a table that had none stays empty until this file is read again.
--  * Formats: with --format csv,parquet every period exists twice. In
--    'auto', a table whose every CSV file has its Parquet twin (same
--    directory, same name) is read from Parquet only; a table with CSV
--    files only, from CSV; a table where only some periods have Parquet
--    (the format changed between runs), from Parquet plus the CSV files that
--    have no twin (this reads every CSV file to choose them: slower). No
--    period is counted twice.
--  * Types are explicit: CSV columns are given by position with their
--    types (no sniffing; an empty field is NULL), and every column is cast
--    to the schema's type, so inference never turns a numeric user name
--    into BIGINT or an empty period's columns into VARCHAR.
--  * Files of earlier versions: a version only ever appends columns to a
--    table, so a CSV file with fewer columns than this script lists is read
--    with the missing ones NULL (null_padding; parallel = false is what
--    DuckDB allows with quoted newlines, and files are still read in
--    parallel), and Parquet files are joined by column name behind a typed
--    empty row set of every column. Upgrading never makes old data
--    unreadable, and their new columns read as NULL.
--  * Everything is TEMP: nothing is written to an attached database file,
--    and reading this file again replaces it all.
-- getenv() exists only in the DuckDB CLI; elsewhere, SET VARIABLE
-- taskscope_dir and taskscope_format first and replace the getenv() calls.

SET VARIABLE taskscope_dir = coalesce(
    getvariable('taskscope_dir'), nullif(getenv('TASKSCOPE_DIR'), ''), '.');
SET VARIABLE taskscope_format = coalesce(
    getvariable('taskscope_format'), nullif(getenv('TASKSCOPE_FORMAT'), ''), 'auto');
SET VARIABLE taskscope_format = CASE
    WHEN getvariable('taskscope_format') IN ('auto', 'csv', 'parquet')
        THEN getvariable('taskscope_format')
    ELSE error('taskscope_format must be auto, csv or parquet, not '
               || getvariable('taskscope_format'))
    END;

-- The tables and their columns, as `taskscope schema` prints them (a test
-- checks they agree).
CREATE OR REPLACE TEMP TABLE taskscope_tables (name VARCHAR, columns VARCHAR);
INSERT INTO taskscope_tables VALUES
    ('samples',
     'ts TIMESTAMP, tid BIGINT, tgid BIGINT, comm VARCHAR, exe VARCHAR, user VARCHAR, '
     'state VARCHAR, state_since_us BIGINT, cpu BIGINT, syscall VARCHAR, syscall_nr BIGINT, '
     'syscall_us BIGINT, syscall_arg0 BIGINT, syscall_arg1 BIGINT, syscall_arg2 BIGINT, '
     'io_dev VARCHAR, io_op VARCHAR, io_bytes BIGINT, io_us BIGINT, cgroup VARCHAR, '
     'weight_us BIGINT, kfunc VARCHAR, kstack_id BIGINT, ustack_id BIGINT, '
     'syscall_seq BIGINT, io_seq BIGINT, wait_class VARCHAR, since_lower_bound BOOLEAN, '
     'host VARCHAR, container_id VARCHAR, container_runtime VARCHAR, container_name VARCHAR, '
     'pod_name VARCHAR, pod_namespace VARCHAR, pod_uid VARCHAR, '
     'waker_tid BIGINT, waker_comm VARCHAR, blocker_tid BIGINT, blocker_kind VARCHAR, '
     'file VARCHAR, file_pos BIGINT, sock_proto VARCHAR, sock_local VARCHAR, '
     'sock_remote VARCHAR, sock_state VARCHAR, tcp_srtt_us BIGINT, tcp_cwnd BIGINT, '
     'tcp_retrans BIGINT, '
     'syscall_arg3 BIGINT, syscall_arg4 BIGINT, syscall_arg5 BIGINT, syscall_us_lower_bound BOOLEAN, '
     'proc_title VARCHAR, peer_pid BIGINT, peer_comm VARCHAR'),
    ('stacks',
     'stack_id BIGINT, kind VARCHAR, frames VARCHAR, module VARCHAR, depth BIGINT, truncated BOOLEAN, '
     'frame_kinds VARCHAR'),
    ('ticks',
     'ts TIMESTAMP, weight_us BIGINT, threads BIGINT, rows BIGINT, pass_us BIGINT, '
     'missed_ticks BIGINT, torn_reads BIGINT, dropped_ticks BIGINT, dropped_rows BIGINT, '
     'untracked_threads BIGINT, untracked_now BIGINT, slots_used BIGINT, '
     'map_update_failures BIGINT, stack_rows BIGINT, stack_refreshes BIGINT, stacks_of_other_wait BIGINT, unshipped_deleted BIGINT'),
    ('syscalls',
     'enter_ts TIMESTAMP, tid BIGINT, tgid BIGINT, syscall VARCHAR, syscall_nr BIGINT, '
     'seq BIGINT, duration_us BIGINT, ret BIGINT, comm VARCHAR, exe VARCHAR'),
    ('iorq',
     'start_ts TIMESTAMP, tid BIGINT, tgid BIGINT, seq BIGINT, dev VARCHAR, op VARCHAR, '
     'flags VARCHAR, sector BIGINT, bytes BIGINT, queued_us BIGINT, service_us BIGINT, '
     'duration_us BIGINT, error BIGINT, comm VARCHAR, exe VARCHAR');

-- What each table has on disk now, what its view reads, and the SELECT it
-- runs. Paths are <dir>/<table>/date=YYYY-MM-DD/hour=HH/<host>-<start>.<ext>;
-- the period being written lives in <dir>/.inprogress and shows up here
-- when it is published (every --rotate interval, 1h by default, or SIGHUP).
CREATE OR REPLACE TEMP TABLE taskscope_sources AS
WITH
files AS (
    SELECT file,
           split_part(parse_dirpath(parse_dirpath(parse_dirpath(file))), '/', -1) AS name,
           CASE WHEN file LIKE '%.parquet' THEN 'parquet'
                WHEN file LIKE '%.csv.zst' THEN 'csv' END AS format
    FROM glob(getvariable('taskscope_dir') || '/*/date=*/hour=*/*')
),
counted AS (
    SELECT t.name,
           count(f.file) FILTER (f.format = 'parquet') AS parquet_files,
           count(f.file) FILTER (f.format = 'csv') AS csv_files,
           -- CSV files of periods that have no Parquet file.
           count(f.file) FILTER (f.format = 'csv' AND NOT EXISTS (
               SELECT 1 FROM files p
               WHERE p.file = regexp_replace(f.file, '\.csv\.zst$', '.parquet'))) AS csv_only_files
    FROM taskscope_tables t LEFT JOIN files f USING (name)
    GROUP BY t.name
),
columns AS (
    SELECT name, ordinal,
           split_part(definition, ' ', 1) AS column_name,
           split_part(definition, ' ', 2) AS column_type
    FROM (SELECT name, unnest(string_split(columns, ', ')) AS definition,
                 generate_subscripts(string_split(columns, ', '), 1) AS ordinal
          FROM taskscope_tables)
),
pieces AS (
    SELECT name,
           -- Every column cast to its schema type, then the partition columns.
           string_agg(format('CAST("{}" AS {}) AS "{}"', column_name, column_type, column_name), ', '
                      ORDER BY ordinal) || ', CAST(date AS DATE) AS date, CAST(hour AS INTEGER) AS hour'
               AS typed_columns,
           string_agg(format('CAST(NULL AS {}) AS "{}"', column_type, column_name), ', '
                      ORDER BY ordinal) || ', CAST(NULL AS DATE) AS date, CAST(NULL AS INTEGER) AS hour'
               AS null_columns,
           -- read_csv's columns: by position (see above).
           '{' || string_agg(format('''{}'': ''{}''', column_name, column_type), ', '
                             ORDER BY ordinal) || '}' AS csv_columns
    FROM columns
    GROUP BY name
),
reads AS (
    SELECT c.*, p.*,
           format('{}/{}/*/*/*', replace(getvariable('taskscope_dir'), '''', ''''''), c.name) AS file_glob,
           'hive_partitioning = true, hive_types = {''date'': ''DATE'', ''hour'': ''INTEGER''}' AS hive,
           CASE
               WHEN getvariable('taskscope_format') = 'csv'
                   THEN CASE WHEN csv_files > 0 THEN 'csv' ELSE 'none' END
               WHEN getvariable('taskscope_format') = 'parquet'
                   THEN CASE WHEN parquet_files > 0 THEN 'parquet' ELSE 'none' END
               WHEN parquet_files = 0 AND csv_files = 0 THEN 'none'
               WHEN parquet_files = 0 THEN 'csv'
               WHEN csv_only_files = 0 THEN 'parquet'
               ELSE 'parquet+csv'
           END AS reads
    FROM counted c JOIN pieces p USING (name)
),
readers AS (
    SELECT *,
           format('SELECT * FROM read_parquet(''{}.parquet'', union_by_name = true, {})',
                  file_glob, hive) AS parquet_reader,
           format('read_csv(''{}.csv.zst'', auto_detect = false, header = true, columns = {}, '
                  'null_padding = true, parallel = false, delim = '','', quote = ''"'', '
                  'escape = ''"'', {})',
                  file_glob, csv_columns, hive) AS csv_reader,
           -- A Parquet file has the columns of the version that wrote it:
           -- joined by name behind a typed empty row set of every column.
           format('SELECT {} FROM (SELECT {} WHERE false UNION ALL BY NAME ', typed_columns,
                  null_columns) AS typed_head
    FROM reads
)
SELECT name, reads, parquet_files, csv_files, csv_only_files,
       CASE reads
           WHEN 'none' THEN format('SELECT {} WHERE false', null_columns)
           WHEN 'csv' THEN format('SELECT {} FROM {}', typed_columns, csv_reader)
           WHEN 'parquet' THEN format('{}{})', typed_head, parquet_reader)
           -- Parquet, plus the CSV files whose period has no Parquet file.
           ELSE format('{}{}) UNION ALL SELECT {} FROM {} '
                       'WHERE filename NOT IN (SELECT regexp_replace(file, ''\.parquet$'', ''.csv.zst'') '
                       'FROM glob(''{}.parquet''))',
                       typed_head, parquet_reader, typed_columns, csv_reader, file_glob)
       END AS sql
FROM readers
ORDER BY name;

SET VARIABLE taskscope_sql = (SELECT map(list(name), list(sql)) FROM taskscope_sources);

-- The tables. query() runs the SELECT chosen above; DuckDB plans it like a
-- subquery, so filters on date and hour still skip files.
CREATE OR REPLACE TEMP VIEW samples AS FROM query(getvariable('taskscope_sql')['samples']);
CREATE OR REPLACE TEMP VIEW ticks AS FROM query(getvariable('taskscope_sql')['ticks']);
CREATE OR REPLACE TEMP VIEW syscalls AS FROM query(getvariable('taskscope_sql')['syscalls']);
CREATE OR REPLACE TEMP VIEW iorq AS FROM query(getvariable('taskscope_sql')['iorq']);
-- Each period's stacks file repeats the stacks its samples use, so the same
-- stack_id appears once per period: keep one row per id (the id is a hash
-- of kind and frames, so the rows are identical), and samples join to it
-- without multiplying rows.
CREATE OR REPLACE TEMP VIEW stacks AS
SELECT DISTINCT ON (stack_id) stack_id, kind, frames, module, depth, truncated, frame_kinds
FROM query(getvariable('taskscope_sql')['stacks']);

-- ago('2 hours'): that long before now, as a UTC timestamp like ts.
CREATE OR REPLACE TEMP MACRO ago(span) AS
    make_timestamp(epoch_us(now())) - CAST(span AS INTERVAL);

-- Whether a thread in this state is active (Active Session History): the
-- states the agent samples without --all (a test checks this list against
-- the code's).
CREATE OR REPLACE TEMP MACRO taskscope_active(state) AS
    state IN ('ON_CPU', 'RUNQUEUE', 'DISK', 'UNINTERRUPTIBLE', 'STOPPED', 'TRACED', 'NEW', 'FROZEN', 'RTLOCK_WAIT');

-- from_ts <= t < to_ts, either bound NULL for none.
CREATE OR REPLACE TEMP MACRO taskscope_in_window(t, from_ts, to_ts) AS
    (from_ts IS NULL OR t >= from_ts) AND (to_ts IS NULL OR t < to_ts);

-- Microseconds of wall-clock time the agent sampled in the window: the sum
-- of the ticks' weights. Dividing thread time by it gives average threads,
-- and gaps when the agent was not running do not count as idle time.
CREATE OR REPLACE TEMP MACRO taskscope_sampled_us(from_ts, to_ts) AS (
    SELECT sum(weight_us) FROM ticks WHERE taskscope_in_window(ts, from_ts, to_ts));

-- Active Session History: average active threads by wait class, state,
-- thread name, syscall and kernel wait function (the wait class first, as
-- in `taskscope report`; the state kept, which SQL users filter on), and each group's share of the sampled
-- thread time (all_states := true counts sleeping and idle threads too).
-- Example: FROM top_activity(from_ts := ago('1 hour')) LIMIT 20;
CREATE OR REPLACE TEMP MACRO top_activity(from_ts := NULL, to_ts := NULL, all_states := false) AS TABLE
SELECT wait_class, state, comm, syscall, kfunc,
       count(DISTINCT tid) AS threads,
       round(sum(weight_us) / taskscope_sampled_us(from_ts, to_ts), 3) AS avg_threads,
       round(sum(weight_us) / sum(sum(weight_us)) OVER (), 4) AS share
FROM samples
WHERE taskscope_in_window(ts, from_ts, to_ts) AND (all_states OR taskscope_active(state))
GROUP BY wait_class, state, comm, syscall, kfunc
ORDER BY avg_threads DESC, wait_class, state, comm, syscall, kfunc;

-- What active threads waited on: every active state but ON_CPU (with
-- all_states := true, SLEEP, IDLE and the rest too), by state, syscall and
-- kernel wait function, with the thread name seen most. share is of
-- waiting time.
CREATE OR REPLACE TEMP MACRO top_waits(from_ts := NULL, to_ts := NULL, all_states := false) AS TABLE
SELECT state, syscall, kfunc,
       count(DISTINCT tid) AS threads,
       mode(comm) AS top_comm,
       round(sum(weight_us) / taskscope_sampled_us(from_ts, to_ts), 3) AS avg_threads,
       round(sum(weight_us) / sum(sum(weight_us)) OVER (), 4) AS share
FROM samples
WHERE state <> 'ON_CPU' AND (all_states OR taskscope_active(state))
  AND taskscope_in_window(ts, from_ts, to_ts)
GROUP BY state, syscall, kfunc
ORDER BY avg_threads DESC, state, syscall, kfunc;

-- The threads others wait for most (blocker_tid: the owner of a pthread
-- mutex or kernel lock they wait for): how many threads waited, their
-- thread time waiting (waited_us; avg_waiting is that over the time
-- sampled), and what the blocker itself was doing at those ticks, its most
-- common state, wait_class and syscall then (share: of waited_us;
-- blocked_by: whom it waited for itself, the next link of the chain). Every
-- state counts: waiters sleep. blocker_comm is NULL when the blocker has no
-- row at those ticks (another --pid, or not active without --all).
-- Example: FROM top_blockers(from_ts := ago('1 hour')) LIMIT 10;
CREATE OR REPLACE TEMP MACRO top_blockers(from_ts := NULL, to_ts := NULL) AS TABLE
WITH
waits AS (
    SELECT ts, tid AS waiter, blocker_tid, weight_us
    FROM samples
    WHERE blocker_tid IS NOT NULL AND taskscope_in_window(ts, from_ts, to_ts)
),
totals AS (
    SELECT blocker_tid, count(DISTINCT waiter) AS waiters, CAST(sum(weight_us) AS BIGINT) AS waited_us
    FROM waits GROUP BY ALL
),
doing AS (
    SELECT w.blocker_tid, b.comm, b.state, b.wait_class, b.syscall, b.blocker_tid AS blocked_by,
           sum(w.weight_us) AS us
    FROM waits w LEFT JOIN samples b ON b.ts = w.ts AND b.tid = w.blocker_tid
    GROUP BY w.blocker_tid, b.comm, b.state, b.wait_class, b.syscall, b.blocker_tid
    QUALIFY row_number() OVER (PARTITION BY w.blocker_tid ORDER BY sum(w.weight_us) DESC, b.state) = 1
)
SELECT t.blocker_tid, d.comm AS blocker_comm, t.waiters,
       round(t.waited_us / taskscope_sampled_us(from_ts, to_ts), 3) AS avg_waiting,
       t.waited_us, d.state, d.wait_class, d.syscall, d.blocked_by,
       round(d.us / t.waited_us, 4) AS share
FROM totals t LEFT JOIN doing d USING (blocker_tid)
ORDER BY t.waited_us DESC, t.blocker_tid;

-- Average active threads per time bucket and state (the ASH timeline).
-- Example: FROM active_threads(INTERVAL '1 minute') WHERE state = 'DISK';
CREATE OR REPLACE TEMP MACRO active_threads(bucket := INTERVAL '1 minute', from_ts := NULL, to_ts := NULL, all_states := false) AS TABLE
WITH
sampled AS (
    SELECT time_bucket(CAST(bucket AS INTERVAL), ts) AS bucket_start, sum(weight_us) AS sampled_us
    FROM ticks WHERE taskscope_in_window(ts, from_ts, to_ts)
    GROUP BY ALL
),
busy AS (
    SELECT time_bucket(CAST(bucket AS INTERVAL), ts) AS bucket_start, state, sum(weight_us) AS thread_us
    FROM samples
    WHERE taskscope_in_window(ts, from_ts, to_ts) AND (all_states OR taskscope_active(state))
    GROUP BY ALL
)
SELECT bucket_start, state, round(thread_us / sampled_us, 3) AS avg_threads
FROM busy JOIN sampled USING (bucket_start)
ORDER BY bucket_start, avg_threads DESC, state;

-- Sampled thread time per stack: kind 'kernel' (kstack_id), 'user'
-- (ustack_id) or NULL for both. frames are innermost first, ';'-joined.
-- (Inside a macro a parameter's name shadows columns: hence stack_kind.)
-- Example: SELECT avg_threads, frames FROM top_stacks('user') LIMIT 10;
CREATE OR REPLACE TEMP MACRO top_stacks(kind := NULL, from_ts := NULL, to_ts := NULL, all_states := false) AS TABLE
WITH counted AS (
    FROM samples
    WHERE taskscope_in_window(ts, from_ts, to_ts) AND (all_states OR taskscope_active(state))
),
sampled_stacks AS (
    SELECT 'kernel' AS stack_kind, kstack_id AS stack_id, tid, comm, state, weight_us
    FROM counted WHERE kstack_id IS NOT NULL
    UNION ALL
    SELECT 'user', ustack_id, tid, comm, state, weight_us
    FROM counted WHERE ustack_id IS NOT NULL
)
SELECT s.stack_kind AS kind, s.stack_id,
       count(DISTINCT s.tid) AS threads,
       mode(s.comm) AS top_comm,
       string_agg(DISTINCT s.state, ',' ORDER BY s.state) AS states,
       round(sum(s.weight_us) / taskscope_sampled_us(from_ts, to_ts), 3) AS avg_threads,
       round(sum(s.weight_us) / sum(sum(s.weight_us)) OVER (PARTITION BY s.stack_kind), 4) AS share,
       any_value(k.depth) AS depth,
       any_value(k.frames) AS frames,
       any_value(k.frame_kinds) AS frame_kinds
FROM sampled_stacks s LEFT JOIN stacks k USING (stack_id)
WHERE kind IS NULL OR s.stack_kind = kind
GROUP BY s.stack_kind, s.stack_id
ORDER BY avg_threads DESC, s.stack_kind, s.stack_id;

-- The frames of a stack that are of one kind ('native', 'kernel', 'jit', 'python'),
-- in order, ';'-joined: frame_kinds lists one kind per frame of frames.
-- Example: SELECT taskscope_frames_of_kind(frames, frame_kinds, 'jit') FROM stacks;
CREATE OR REPLACE TEMP MACRO taskscope_frames_of_kind(frames, frame_kinds, kind) AS
    array_to_string(list_transform(
        list_filter(list_zip(string_split(frames, ';'), string_split(frame_kinds, ';')),
                    lambda f: f[2] = kind),
        lambda f: f[1]), ';');

-- Syscalls by sampled time (avg_threads: how many threads were inside it on
-- average), with the latencies of the calls that --track syscalls recorded.
CREATE OR REPLACE TEMP MACRO top_syscalls(from_ts := NULL, to_ts := NULL, all_states := false) AS TABLE
WITH
sampled AS (
    SELECT syscall, count(DISTINCT tid) AS threads, mode(comm) AS top_comm,
           round(sum(weight_us) / taskscope_sampled_us(from_ts, to_ts), 3) AS avg_threads,
           round(sum(weight_us) / sum(sum(weight_us)) OVER (), 4) AS share
    FROM samples
    WHERE syscall IS NOT NULL AND taskscope_in_window(ts, from_ts, to_ts)
      AND (all_states OR taskscope_active(state))
    GROUP BY syscall
),
recorded AS (
    SELECT syscall, count(*) AS recorded_calls,
           round(avg(duration_us)) AS avg_us, max(duration_us) AS max_us
    FROM syscalls WHERE taskscope_in_window(enter_ts, from_ts, to_ts)
    GROUP BY syscall
)
SELECT syscall, threads, top_comm, avg_threads, share,
       coalesce(recorded_calls, 0) AS recorded_calls, avg_us, max_us
FROM sampled LEFT JOIN recorded USING (syscall)
ORDER BY avg_threads DESC, syscall;

-- Recorded latencies of one kind of event: syscalls by name, block I/O by
-- device and operation ('8:0 WRITE'). Only events that a sample caught in
-- progress are recorded, and a long event is more likely to be caught than
-- a short one (an event of d microseconds with samples every T is caught
-- with probability about min(1, d/T)): these are exact figures for the
-- recorded events, not for all of them; weight each by max(1, T/d) to
-- estimate the whole population.
CREATE OR REPLACE TEMP MACRO taskscope_latencies(from_ts, to_ts, pid) AS TABLE
SELECT 'syscall' AS kind, syscall AS name, duration_us
FROM syscalls
WHERE taskscope_in_window(enter_ts, from_ts, to_ts) AND (pid IS NULL OR tgid = pid)
UNION ALL
SELECT 'io', dev || ' ' || op, duration_us
FROM iorq
WHERE taskscope_in_window(start_ts, from_ts, to_ts) AND (pid IS NULL OR tgid = pid);

-- count, average and percentiles of the recorded syscalls and block I/O,
-- of one process (pid, the tgid column) or of all.
-- Example: FROM latency_summary(pid := 1234) WHERE name = 'fdatasync';
CREATE OR REPLACE TEMP MACRO latency_summary(from_ts := NULL, to_ts := NULL, pid := NULL) AS TABLE
SELECT kind, name, count(*) AS count,
       round(avg(duration_us)) AS avg_us,
       quantile_disc(duration_us, 0.50) AS p50_us,
       quantile_disc(duration_us, 0.95) AS p95_us,
       quantile_disc(duration_us, 0.99) AS p99_us,
       max(duration_us) AS max_us,
       round(sum(duration_us) / 1e6, 3) AS total_s
FROM taskscope_latencies(from_ts, to_ts, pid)
GROUP BY kind, name
ORDER BY sum(duration_us) DESC, kind, name;

-- log2 histogram of the same: bucket [low_us, high_us) with its count and
-- a bar scaled to the fullest bucket of that name. low_us 0 holds 0 us.
-- Example: FROM latency_histogram() WHERE name = 'clock_nanosleep';
CREATE OR REPLACE TEMP MACRO latency_histogram(from_ts := NULL, to_ts := NULL, pid := NULL) AS TABLE
WITH buckets AS (
    SELECT kind, name,
           CASE WHEN duration_us < 1 THEN 0
                ELSE CAST(pow(2, floor(log2(duration_us))) AS BIGINT) END AS low_us,
           count(*) AS count
    FROM taskscope_latencies(from_ts, to_ts, pid)
    GROUP BY ALL
)
SELECT kind, name, low_us, greatest(2 * low_us, 1) AS high_us, count,
       repeat('#', CAST(ceil(40 * count / max(count) OVER (PARTITION BY kind, name)) AS INTEGER)) AS bar
FROM buckets
ORDER BY kind, name, low_us;
