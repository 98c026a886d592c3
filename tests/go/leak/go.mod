module reaper-trace/leak

go 1.18
