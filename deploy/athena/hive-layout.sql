-- Athena table over the Hive-style layout of docs/querying.md:
--   OBJECT_KEY={prefix}/dt={yyyy}-{MM}-{dd}/hour={HH}/type={event.type}/{batch}
-- keys such as raw/dt=2026-12-07/hour=23/type=click/<batch id>.jsonl.zst (COMPRESSION=zstd; gzip's
-- .jsonl.gz is read the same way: Athena picks the codec by the extension). Partition projection
-- computes the partitions from the query (no crawler, no MSCK REPAIR TABLE). Replace my-bucket, raw
-- (S3_PREFIX) and the range's start. `type` is injected: a query names the types it reads
-- (WHERE type = 'click', or IN (...)), with the value as it is in the key (a/b is a%2Fb; events
-- without a string type are under __HIVE_DEFAULT_PARTITION__). To scan every type instead, make it
-- an enum of your types: 'projection.type.type' = 'enum', 'projection.type.values' = 'click,view'.
-- Each line is {"received_at":<ms>,"event":{...}}: `event` is kept as its JSON text, so a change
-- in the events' schema never breaks the table; the view below reads typed fields from it.
CREATE EXTERNAL TABLE IF NOT EXISTS events_by_type_raw (
  received_at bigint,
  event string
)
PARTITIONED BY (dt string, hour string, type string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://my-bucket/raw/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2026-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'projection.type.type' = 'injected',
  'storage.location.template' = 's3://my-bucket/raw/dt=${dt}/hour=${hour}/type=${type}/'
);

-- Typed columns over the JSON text: add the fields your events have.
CREATE OR REPLACE VIEW events_by_type AS
SELECT
  from_unixtime(received_at / 1000e0) AS received,
  json_extract_scalar(event, '$.user_id') AS user_id,
  event,
  dt,
  hour,
  type
FROM events_by_type_raw;

-- Events per type and day: only the named types' folders of that week are read.
SELECT type, dt, count(*) AS events
FROM events_by_type
WHERE type IN ('click', 'view') AND dt BETWEEN '2026-12-01' AND '2026-12-07'
GROUP BY type, dt
ORDER BY type, dt;
