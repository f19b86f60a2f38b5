"""The shape of the HoloDeck part of agent.yaml, as holodeck-ai 0.7.1 accepts it: each section's keys with their
types, its required keys, and the allowed values of every enum.

Written from the JSON schema of upstream's own models (`holodeck.models.agent.Agent.model_json_schema()`, which the
runtime validates agent.yaml with; the schema file the wheel publishes lags it by `openai`, `evaluations.optimizer`
and `observability.disable_provider_tracing`). tests/unit/test_holodeck_schema.py compares every section, key,
required key and enum here with upstream's, so moving the pin shows each difference. `deployment:` is not here:
models.py holds it, upstream's keys and agentdeploy's additions.

A type is written `str`, `int`, `num`, `bool`, `obj` (any mapping), `any`, a section or enum name, `[T]` (a list),
`{T}` (a mapping of T), `=x` (exactly x), `A|B` (either); a trailing `?` also accepts null. LIMITS holds the bounds
and patterns of single fields.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLODECK_VERSION = "0.7.1"


@dataclass(frozen=True)
class Section:
    """A mapping: `name:type` for each key (space separated), the keys it requires, whether other keys are refused."""

    fields: str
    required: str = ""
    closed: bool = True

    def types(self) -> dict[str, str]:
        return dict(field.split(":", 1) for field in self.fields.split())

    def required_keys(self) -> tuple[str, ...]:
        return tuple(self.required.split())


# Keys upstream's loader reads before its model does: `test_cases_file` is read and replaced by `test_cases`.
LOADER_KEYS = {"test_cases_file": "str?"}

ENUMS: dict[str, tuple[str, ...]] = {
    "AuthProvider": ("api_key", "oauth_token", "bedrock", "vertex", "foundry", "custom"),
    "ChunkingStrategy": ("structure", "token"),
    "ClaudeConfig_effort": ("low", "medium", "high", "max"),
    "ClaudeConfig_setting_sources": ("user", "project", "local", "all"),
    "CommandType": ("npx", "node", "uvx", "docker"),
    "DatabaseConfig_provider": (
        "postgres",
        "azure-ai-search",
        "qdrant",
        "weaviate",
        "chromadb",
        "faiss",
        "azure-cosmos-mongo",
        "azure-cosmos-nosql",
        "sql-server",
        "pinecone",
        "in-memory",
    ),
    "DocumentDomain": ("none", "us_legislative", "au_legislative", "academic", "technical", "legal_contract"),
    "EvaluationMetric_metric": (
        "groundedness",
        "relevance",
        "coherence",
        "fluency",
        "bleu",
        "rouge",
        "meteor",
        "equality",
        "numeric",
    ),
    "KeywordIndexConfig_provider": ("in-memory", "opensearch"),
    "LogLevel": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "NumericAxis_type": ("float", "int", "categorical"),
    "OTLPProtocol": ("grpc", "http"),
    "OpenAIConfig_effort": ("low", "medium", "high", "max"),
    "PermissionMode": ("manual", "acceptEdits", "acceptAll"),
    "ProviderEnum": ("openai", "azure_openai", "anthropic", "ollama"),
    "RAGMetricType": (
        "faithfulness",
        "contextual_relevancy",
        "contextual_precision",
        "contextual_recall",
        "answer_relevancy",
    ),
    "SearchMode": ("semantic", "keyword", "hybrid"),
    "SubagentSpec_model": ("sonnet", "opus", "haiku", "inherit"),
    "TransportType": ("stdio", "sse", "websocket", "http"),
}
TAGGED: dict[str, dict[str, str]] = {
    "Tool": {
        "vectorstore": "VectorstoreTool",
        "function": "FunctionTool",
        "mcp": "MCPTool",
        "prompt": "PromptTool",
        "hierarchical_document": "HierarchicalDocumentToolConfig",
    },
    "Metric": {"standard": "EvaluationMetric", "geval": "GEvalMetric", "rag": "RAGMetric", "code": "CodeMetric"},
}
SECTIONS: dict[str, Section] = {
    "Agent": Section(
        "name:str description:str? author:str? model:LLMProvider instructions:Instructions "
        "response_format:obj|str? tools:[Tool]? evaluations:EvaluationConfig? test_cases:[TestCaseModel]? "
        "execution:ExecutionConfig? observability:ObservabilityConfig? deployment:any "
        "embedding_provider:LLMProvider? claude:ClaudeConfig? openai:OpenAIConfig?",
        required="name model instructions",
    ),
    "AxesConfig": Section(
        "numeric:[NumericAxis] textual:[TextualAxis]",
        required="",
    ),
    "AzureMonitorExporterConfig": Section(
        "enabled:bool connection_string:str? disable_offline_storage:bool storage_directory:str?",
        required="",
    ),
    "BashConfig": Section(
        "enabled:bool excluded_commands:[str] allow_unsafe:bool",
        required="",
    ),
    "ClaudeConfig": Section(
        "working_directory:str? permission_mode:PermissionMode max_turns:int? max_concurrent_sessions:int? "
        "session_memory_estimate_mib:int extended_thinking:ExtendedThinkingConfig? web_search:bool "
        "bash:BashConfig? file_system:FileSystemConfig? agents:{SubagentSpec}? allowed_tools:[str]? "
        "effort:ClaudeConfig_effort? max_budget_usd:num? fallback_model:str? disallowed_tools:[str]? "
        "setting_sources:[ClaudeConfig_setting_sources]? i_understand_this_is_unsafe:bool "
        "disable_default_hooks:bool disable_subprocess_env_scrub:bool",
        required="",
    ),
    "CodeMetric": Section(
        "type:=code grader:str threshold:num? enabled:bool fail_on_error:bool name:str?",
        required="grader",
    ),
    "ConsoleExporterConfig": Section(
        "enabled:bool pretty_print:bool include_timestamps:bool",
        required="",
    ),
    "DatabaseConfig": Section(
        "provider:DatabaseConfig_provider connection_string:str?",
        required="provider",
        closed=False,
    ),
    "EvaluationConfig": Section(
        "model:LLMProvider? metrics:[Metric] optimizer:OptimizerConfig?",
        required="metrics",
    ),
    "EvaluationMetric": Section(
        "type:=standard metric:EvaluationMetric_metric threshold:num? enabled:bool scale:int? "
        "model:LLMProvider? fail_on_error:bool retry_on_failure:int? timeout_ms:int? custom_prompt:str? "
        "case_insensitive:bool strip_whitespace:bool strip_punctuation:bool absolute_tolerance:num "
        "relative_tolerance:num accept_percent:bool accept_thousands_separators:bool response_path:str?",
        required="metric",
    ),
    "ExecutionConfig": Section(
        "file_timeout:int? llm_timeout:int? download_timeout:int? cache_enabled:bool? cache_dir:str? "
        "verbose:bool? quiet:bool? parallel_test_cases:int?",
        required="",
    ),
    "ExpectedTool": Section(
        "name:str args:obj? count:int",
        required="name",
    ),
    "ExportersConfig": Section(
        "console:ConsoleExporterConfig? otlp:OTLPExporterConfig? prometheus:PrometheusExporterConfig? "
        "azure_monitor:AzureMonitorExporterConfig?",
        required="",
    ),
    "ExtendedThinkingConfig": Section(
        "enabled:bool budget_tokens:int",
        required="",
    ),
    "FileInput": Section(
        "path:str? url:str? type:str description:str? pages:[int]? sheet:str? range:str? cache:bool?",
        required="type",
    ),
    "FileSystemConfig": Section(
        "read:bool write:bool edit:bool",
        required="",
    ),
    "FunctionTool": Section(
        "name:str description:str type:=function defer_loading:bool file:str function:str parameters:{obj}?",
        required="name description file function",
    ),
    "GEvalMetric": Section(
        "type:=geval name:str criteria:str evaluation_steps:[str]? evaluation_params:[str] strict_mode:bool "
        "threshold:num? model:LLMProvider? enabled:bool fail_on_error:bool",
        required="name criteria",
    ),
    "HierarchicalDocumentToolConfig": Section(
        "name:str description:str type:=hierarchical_document source:str chunking_strategy:ChunkingStrategy "
        "max_chunk_tokens:int chunk_overlap:int document_domain:DocumentDomain max_subsection_depth:int? "
        "search_mode:SearchMode top_k:int min_score:num? semantic_weight:num keyword_weight:num "
        "exact_weight:num rrf_k:int contextual_embeddings:bool context_max_tokens:int context_concurrency:int "
        "extract_definitions:bool extract_cross_references:bool enable_reranking:bool "
        "reranker_model:LLMProvider? context_model:LLMProvider? embedding_model:str? "
        "database:DatabaseConfig|str? keyword_index:KeywordIndexConfig? defer_loading:bool",
        required="name description source",
    ),
    "Instructions": Section(
        "file:str? inline:str?",
        required="",
    ),
    "KeywordIndexConfig": Section(
        "provider:KeywordIndexConfig_provider endpoint:str? index_name:str? username:str? password:str? "
        "api_key:str? verify_certs:bool timeout_seconds:int",
        required="",
        closed=False,
    ),
    "LLMProvider": Section(
        "provider:ProviderEnum name:str temperature:num? max_tokens:int? top_p:num? endpoint:str? "
        "api_key:str? api_version:str? auth_provider:AuthProvider?",
        required="provider name",
    ),
    "LogsConfig": Section(
        "enabled:bool level:LogLevel include_trace_context:bool filter_namespaces:[str]",
        required="",
    ),
    "MCPTool": Section(
        "name:str description:str type:=mcp defer_loading:bool transport:TransportType command:CommandType? "
        "args:[str]? env:{str}? env_file:str? encoding:str? url:str? headers:{str}? timeout:num? "
        "sse_read_timeout:num? terminate_on_close:bool? config:obj? load_tools:bool load_prompts:bool "
        "request_timeout:int is_retrieval:bool registry_name:str?",
        required="name description",
    ),
    "MetricsConfig": Section(
        "enabled:bool export_interval_ms:int",
        required="",
    ),
    "NumericAxis": Section(
        "path:str type:NumericAxis_type range:[any]",
        required="path type range",
    ),
    "OTLPExporterConfig": Section(
        "enabled:bool endpoint:str protocol:OTLPProtocol headers:{str} timeout_ms:int compression:str? insecure:bool",
        required="",
    ),
    "ObservabilityConfig": Section(
        "enabled:bool disable_provider_tracing:bool service_name:str? traces:TracingConfig "
        "metrics:MetricsConfig logs:LogsConfig exporters:ExportersConfig resource_attributes:{str}",
        required="",
    ),
    "OpenAIConfig": Section(
        "max_concurrent_sessions:int? session_memory_estimate_mib:int max_turns:int "
        "i_understand_this_is_unsafe:bool disable_default_hooks:bool disable_subprocess_env_scrub:bool "
        "permissions:OpenAIPermissionsConfig? effort:OpenAIConfig_effort? max_budget_usd:num? "
        "fallback_model:str? disallowed_tools:[str]?",
        required="",
    ),
    "OpenAIPermissionsConfig": Section(
        "allowed_tools:[str]? disallowed_tools:[str]?",
        required="",
    ),
    "OptimizerConfig": Section(
        "loss:{num} axes:AxesConfig max_cycles:int numeric_phase:PhaseConfig textual_phase:PhaseConfig "
        "min_delta:num seed:int",
        required="loss",
    ),
    "PhaseConfig": Section(
        "max_trials:int patience:int",
        required="max_trials patience",
    ),
    "PrometheusExporterConfig": Section(
        "enabled:bool port:int host:str path:str",
        required="",
    ),
    "PromptTool": Section(
        "name:str description:str type:=prompt defer_loading:bool template:str? file:str? parameters:{obj} model:obj?",
        required="name description parameters",
    ),
    "RAGMetric": Section(
        "type:=rag metric_type:RAGMetricType threshold:num include_reason:bool model:LLMProvider? "
        "enabled:bool fail_on_error:bool",
        required="metric_type",
    ),
    "SubagentSpec": Section(
        "description:str prompt:str? prompt_file:str? tools:[str]? model:SubagentSpec_model?",
        required="description",
    ),
    "TestCaseModel": Section(
        "name:str? input:str? expected_tools:[str|ExpectedTool]? ground_truth:str? files:[FileInput]? "
        "retrieval_context:[str]? evaluations:[EvaluationMetric|GEvalMetric|RAGMetric|CodeMetric]? "
        "turns:[Turn]?",
        required="",
    ),
    "TextualAxis": Section(
        "path:str max_chars:int",
        required="path",
    ),
    "TracingConfig": Section(
        "enabled:bool sample_rate:num capture_content:bool capture_evaluation_content:bool "
        "redaction_patterns:[str] max_queue_size:int max_export_batch_size:int schedule_delay_millis:int",
        required="",
    ),
    "Turn": Section(
        "input:str ground_truth:str? expected_tools:[str|ExpectedTool]? files:[FileInput]? "
        "retrieval_context:[str]? evaluations:[EvaluationMetric|GEvalMetric|RAGMetric|CodeMetric]? "
        "turn_config:obj?",
        required="input",
    ),
    "VectorstoreTool": Section(
        "name:str description:str type:=vectorstore defer_loading:bool source:str vector_field:str|[str]? "
        "meta_fields:[str]? chunk_size:int? chunk_overlap:int? embedding_model:str? embedding_dimensions:int? "
        "database:DatabaseConfig|str? top_k:int min_similarity_score:num? record_path:str? record_prefix:str? "
        "meta_prefix:str? id_field:str? field_separator:str delimiter:str?",
        required="name description source",
    ),
}


# Bounds and patterns of single fields, from the same schema: "min..max" (either side may be open), ">x" (more
# than x), or "/regex/" (the whole value).
LIMITS: dict[str, str] = {
    "ClaudeConfig.max_turns": "1..",
    "ClaudeConfig.max_concurrent_sessions": "1..500",
    "ClaudeConfig.session_memory_estimate_mib": "50..2000",
    "ClaudeConfig.max_budget_usd": ">0",
    "CodeMetric.grader": "/^[\\w.]+:[\\w_]+$/",
    "EvaluationMetric.absolute_tolerance": "0..",
    "EvaluationMetric.relative_tolerance": "0..",
    "ExecutionConfig.parallel_test_cases": "1..",
    "ExpectedTool.count": "1..",
    "ExtendedThinkingConfig.budget_tokens": "1000..100000",
    "FunctionTool.name": "/^[0-9A-Za-z_]+$/",
    "HierarchicalDocumentToolConfig.name": "/^[0-9A-Za-z_]+$/",
    "HierarchicalDocumentToolConfig.max_chunk_tokens": "100..2000",
    "HierarchicalDocumentToolConfig.chunk_overlap": "0..200",
    "HierarchicalDocumentToolConfig.max_subsection_depth": "1..",
    "HierarchicalDocumentToolConfig.top_k": "1..100",
    "HierarchicalDocumentToolConfig.semantic_weight": "0..1",
    "HierarchicalDocumentToolConfig.keyword_weight": "0..1",
    "HierarchicalDocumentToolConfig.exact_weight": "0..1",
    "HierarchicalDocumentToolConfig.rrf_k": "1..",
    "HierarchicalDocumentToolConfig.context_max_tokens": "50..200",
    "HierarchicalDocumentToolConfig.context_concurrency": "1..50",
    "KeywordIndexConfig.timeout_seconds": "1..120",
    "MCPTool.name": "/^[0-9A-Za-z_]+$/",
    "MetricsConfig.export_interval_ms": "1000..",
    "OTLPExporterConfig.timeout_ms": "1000..",
    "OpenAIConfig.max_concurrent_sessions": "1..500",
    "OpenAIConfig.session_memory_estimate_mib": "50..2000",
    "OpenAIConfig.max_turns": "1..",
    "OpenAIConfig.max_budget_usd": ">0",
    "OptimizerConfig.max_cycles": ">0",
    "OptimizerConfig.min_delta": "0..",
    "PhaseConfig.max_trials": ">0",
    "PhaseConfig.patience": ">0",
    "PrometheusExporterConfig.port": "1024..65535",
    "PromptTool.name": "/^[0-9A-Za-z_]+$/",
    "RAGMetric.threshold": "0..1",
    "TextualAxis.max_chars": ">0",
    "TracingConfig.sample_rate": "0..1",
    "TracingConfig.max_queue_size": "1..",
    "TracingConfig.max_export_batch_size": "1..",
    "TracingConfig.schedule_delay_millis": "100..",
    "VectorstoreTool.name": "/^[0-9A-Za-z_]+$/",
}

# Bounds upstream's field validators hold (holodeck/models/llm.py), which its schema does not show.
VALIDATOR_LIMITS: dict[str, str] = {
    "LLMProvider.temperature": "0..2",
    "LLMProvider.top_p": "0..1",
    "LLMProvider.max_tokens": ">0",
}
