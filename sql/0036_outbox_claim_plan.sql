-- The dispatcher claims pending outbox events through outbox_pending_idx in id order, whatever the table's
-- statistics say.
--
-- The outbox is a queue: under load thousands of rows a second are written and deleted, and autovacuum
-- analyzes it at moments when it holds a handful of rows. With such statistics the planner read the claim
-- (`order by id limit n for update skip locked` inside `delete ... where id in (...)`) with a bitmap heap
-- scan and a sort, or with a sequential scan. Both visit every deleted row the index or the heap still
-- holds until vacuum: at 64 connections of single-lead ingest, about 29,000 dead index entries and 1,000
-- heap pages for 97 live events, 4 ms of a 27 ms dispatch. A plain index scan marks the dead entries it
-- passes, so the next claim skips them.
--
-- Measured with the benchmark's platform and worker at 64 connections (wrk, 10 s, three interleaved runs):
-- the dispatcher's backend used 0.136-0.188 ms of CPU per lead before, 0.112-0.153 ms with bitmap scans
-- off. Every other table the statement reads is reached through an index as well, so the settings change
-- only the claim's plan.
alter function app._dispatch_outbox(int, int, bigint[]) set enable_seqscan = off;
alter function app._dispatch_outbox(int, int, bigint[]) set enable_bitmapscan = off;
