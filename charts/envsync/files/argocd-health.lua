-- Argo CD health check for envsync.dev/EnvSync.
-- Install it under the argocd-cm key `resource.customizations.health.envsync.dev_EnvSync`
-- (docs/gitops.md). It reads the kstatus conditions the operator writes (docs/conditions.md):
--   no status yet, or status for an older generation      -> Progressing
--   syncPolicy.suspend, or Ready reason Suspended          -> Suspended
--   Stalled=True (needs a person: bad file, access, owner)  -> Degraded
--   Reconciling=True (retrying by itself, or a new spec)    -> Progressing
--   Ready=True                                             -> Healthy
--   Ready=False                                            -> Degraded
--   anything else (Ready Unknown)                          -> Progressing
local hs = {}

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.reason ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c.reason ~= nil then
    return c.reason
  end
  return ""
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if obj.spec ~= nil and obj.spec.syncPolicy ~= nil and obj.spec.syncPolicy.suspend == true then
  hs.status = "Suspended"
  hs.message = "syncPolicy.suspend is true: nothing is read or written"
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the envsync operator to report status"
  return hs
end

local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = obj.status.conditions
local ready = condition(conditions, "Ready")
local stalled = condition(conditions, "Stalled")
local reconciling = condition(conditions, "Reconciling")

if ready ~= nil and generation ~= nil and ready.observedGeneration ~= nil
    and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if ready ~= nil and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
