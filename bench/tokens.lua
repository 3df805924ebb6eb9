-- wrk script for bench/run.sh: a different bearer token on every request.
--   wrk ... -s bench/tokens.lua URL -- TOKENS_FILE [START]
-- Tokens are taken in order from line START (default 1) of TOKENS_FILE,
-- wrapping at its end; with several wrk threads each starts at its own
-- share of the file. (wrk itself reports non-2xx responses.)

local tokens = {}
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  local start = tonumber(args[2] or "1")
  for line in io.lines(file) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  local share = math.floor(#tokens / 16)
  next_index = ((start - 1 + id * share) % #tokens) + 1
end

function request()
  local t = tokens[next_index]
  next_index = next_index + 1
  if next_index > #tokens then next_index = 1 end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. t })
end
