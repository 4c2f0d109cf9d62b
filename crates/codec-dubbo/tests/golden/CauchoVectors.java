// Hessian 2 vectors written by Caucho Hessian (Debian libhessian-java 4.0.38). Writes
// caucho_vectors.txt in the format of hessian_vectors.txt: `name<TAB>hex<TAB>canonical JSON`.
// Run from this folder:
//   javac -cp /usr/share/java/hessian.jar -d /tmp/caucho CauchoVectors.java
//   java --add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.util=ALL-UNNAMED \
//        --add-opens java.base/java.math=ALL-UNNAMED -cp /usr/share/java/hessian.jar:/tmp/caucho CauchoVectors
import com.caucho.hessian.io.Hessian2Output;
import java.io.ByteArrayOutputStream;
import java.io.FileWriter;
import java.io.Serializable;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.*;

public class CauchoVectors {
    public static class Point implements Serializable {
        public int x;
        public int y;
        public Point(int x, int y) { this.x = x; this.y = y; }
    }

    public static class Holder implements Serializable {
        public String name;
        public Object value;
        public Holder(String name, Object value) { this.name = name; this.value = value; }
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x & 0xff));
        return sb.toString();
    }

    static String str(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20 || c > 0x7e) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }

    /** Canonical JSON, as tests/hessian_vectors.rs computes it from a decoded value. */
    static String canon(Object v) throws Exception {
        if (v == null) return "null";
        if (v instanceof Boolean) return v.toString();
        if (v instanceof Integer || v instanceof Short || v instanceof Byte) return v.toString();
        if (v instanceof Long) {
            long l = (Long) v;
            return (l >= -(1L << 53) && l <= (1L << 53)) ? Long.toString(l) : str(Long.toString(l));
        }
        if (v instanceof Double || v instanceof Float) return Double.toString(((Number) v).doubleValue());
        if (v instanceof String) {
            String s = (String) v;
            if (s.length() > 2000) {
                return "{\"$strlen\":" + s.length() + ",\"$head\":" + str(s.substring(0, 8))
                    + ",\"$tail\":" + str(s.substring(s.length() - 8)) + "}";
            }
            return str(s);
        }
        if (v instanceof byte[]) {
            byte[] b = (byte[]) v;
            if (b.length > 1000) {
                return "{\"$binlen\":" + b.length + ",\"$head\":" + str(hex(Arrays.copyOf(b, 4))) + "}";
            }
            return "{\"$bin\":" + str(hex(b)) + "}";
        }
        if (v instanceof Date) return "{\"$date\":" + ((Date) v).getTime() + "}";
        if (v instanceof int[]) {
            List<Object> l = new ArrayList<>();
            for (int i : (int[]) v) l.add(i);
            return canon(l);
        }
        if (v instanceof Object[]) return canon(Arrays.asList((Object[]) v));
        if (v instanceof Collection) {
            StringJoiner j = new StringJoiner(",", "[", "]");
            for (Object o : (Collection<?>) v) j.add(canon(o));
            return j.toString();
        }
        if (v instanceof Map) {
            StringJoiner j = new StringJoiner(",", "{", "}");
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                j.add(str(String.valueOf(e.getKey())) + ":" + canon(e.getValue()));
            }
            return j.toString();
        }
        if (v instanceof Enum) return "{\"name\":" + str(((Enum<?>) v).name()) + "}";
        StringJoiner j = new StringJoiner(",", "{", "}");
        for (Class<?> c = v.getClass(); c != null && c != Object.class; c = c.getSuperclass()) {
            for (Field f : c.getDeclaredFields()) {
                if (Modifier.isStatic(f.getModifiers()) || Modifier.isTransient(f.getModifiers())) continue;
                f.setAccessible(true);
                j.add(str(f.getName()) + ":" + canon(f.get(v)));
            }
        }
        return j.toString();
    }

    enum Color { RED, GREEN }

    public static void main(String[] args) throws Exception {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("null", null);
        v.put("int_m16", -16);
        v.put("int_2048", 2048);
        v.put("int_max", Integer.MAX_VALUE);
        v.put("long_15", 15L);
        v.put("long_m2048", -2048L);
        v.put("long_262143", 262143L);
        v.put("long_int32", 2147483647L);
        v.put("long_min", Long.MIN_VALUE);
        v.put("double_0", 0.0);
        v.put("double_1", 1.0);
        v.put("double_byte", -128.0);
        v.put("double_short", 32767.0);
        v.put("double_mill", 12.25);
        v.put("double_full", Math.PI);
        v.put("string_world", "world");
        v.put("string_unicode", "h\u00e9llo \u20ac \u4e2d\u6587 \ud83d\ude00");
        v.put("string_1024", "w".repeat(1024));
        v.put("string_chunked", "a".repeat(32767) + "\ud83d\ude00" + "b".repeat(100));
        v.put("binary_small", new byte[] {1, 2, 3});
        v.put("binary_1000", new byte[1000]);
        v.put("binary_chunked", new byte[9000]);
        v.put("date_ms", new Date(1700000000123L));
        v.put("date_minute", new Date(1700000040000L));
        v.put("int_array", new int[] {1, 2, 3});
        v.put("string_array", new String[] {"a", "b"});
        v.put("arraylist", new ArrayList<>(List.of(1, "two", 3L)));
        v.put("linkedlist", new LinkedList<>(List.of("x", "y")));
        v.put("hashmap", new HashMap<>(Map.of("k", "v")));
        TreeMap<String, Object> tree = new TreeMap<>();
        tree.put("a", 1);
        tree.put("b", new ArrayList<>(List.of("c")));
        v.put("treemap", tree);
        v.put("point", new Point(1, 2));
        v.put("points", new ArrayList<>(List.of(new Point(1, 2), new Point(3, 4))));
        Point shared = new Point(5, 6);
        v.put("ref_shared", new ArrayList<>(List.of(shared, shared)));
        v.put("holder_nested", new Holder("outer", new Holder("inner", new int[] {7})));
        v.put("enum", Color.GREEN);
        List<Object> many = new ArrayList<>();
        for (int i = 0; i < 18; i++) many.add(i % 2 == 0 ? new Point(i, i) : new Holder("h" + i, i));
        many.add(Color.RED);
        v.put("mixed_classes", many);

        try (FileWriter w = new FileWriter("caucho_vectors.txt")) {
            for (Map.Entry<String, Object> e : v.entrySet()) {
                ByteArrayOutputStream bos = new ByteArrayOutputStream();
                Hessian2Output out = new Hessian2Output(bos);
                out.writeObject(e.getValue());
                out.flush();
                w.write(e.getKey() + "\t" + hex(bos.toByteArray()) + "\t" + canon(e.getValue()) + "\n");
            }
        }
        System.out.println("wrote " + v.size() + " vectors");
    }
}
