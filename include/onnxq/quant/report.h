// A minimal streaming JSON writer for quantization reports and CLI output (numbers are written with
// enough digits to round-trip; NaN/Inf become null, which JSON cannot spell otherwise).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace onnxq::quant {

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(const std::string& k);
  JsonWriter& String(const std::string& s);
  JsonWriter& Number(double v);
  JsonWriter& Int(int64_t v);
  JsonWriter& Bool(bool b);
  JsonWriter& Null();
  // Inserts already-serialized JSON as a value.
  JsonWriter& Raw(const std::string& json);
  // Shorthands for object members.
  JsonWriter& Field(const std::string& k, const std::string& v) { return Key(k).String(v); }
  JsonWriter& Field(const std::string& k, const char* v) { return Key(k).String(v); }
  JsonWriter& Field(const std::string& k, double v) { return Key(k).Number(v); }
  JsonWriter& Field(const std::string& k, int64_t v) { return Key(k).Int(v); }
  JsonWriter& Field(const std::string& k, int v) { return Key(k).Int(v); }
  JsonWriter& Field(const std::string& k, bool v) { return Key(k).Bool(v); }
  const std::string& str() const { return out_; }

  static std::string Escape(const std::string& s);

 private:
  void Comma();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace onnxq::quant
