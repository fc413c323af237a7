/// The `depends_on` graph between manifests: deterministic topological order and cycle finding.
struct DependencyGraph {
    /// Sorted node names.
    let nodes: [String]
    /// Dependencies of each node (only those that are nodes), sorted.
    let edges: [String: [String]]

    init(services: [ServiceManifest]) {
        let names = Set(services.map(\.name))
        nodes = names.sorted()
        var edges: [String: [String]] = [:]
        for s in services { edges[s.name] = Set(s.dependsOn.filter { names.contains($0) && $0 != s.name }).sorted() }
        self.edges = edges
    }

    /// Dependencies first; among services whose dependencies are all placed, the smallest name goes next.
    /// Nodes on a cycle (never the case for a validated set) are appended by name at the end.
    func topologicalOrder() -> [String] {
        var remaining: [String: Int] = [:]
        var dependents: [String: [String]] = [:]
        for n in nodes {
            remaining[n] = edges[n]?.count ?? 0
            for d in edges[n] ?? [] { dependents[d, default: []].append(n) }
        }
        var ready = nodes.filter { remaining[$0] == 0 }
        var order: [String] = []
        while !ready.isEmpty {
            ready.sort()
            let next = ready.removeFirst()
            order.append(next)
            for d in dependents[next] ?? [] {
                remaining[d]! -= 1
                if remaining[d] == 0 { ready.append(d) }
            }
        }
        if order.count < nodes.count {
            let placed = Set(order)
            order += nodes.filter { !placed.contains($0) }
        }
        return order
    }

    /// One cycle per strongly connected component with more than one node, each starting and ending at
    /// the component's smallest name and following the smallest names first (`["a", "b", "c", "a"]`).
    func cycles() -> [[String]] {
        stronglyConnectedComponents().filter { $0.count > 1 }.map { component in
            let members = Set(component)
            let start = component.min()!
            // Breadth-first from start back to start, inside the component: a shortest cycle through it.
            var previous: [String: String] = [:]
            var queue = [start]
            var head = 0
            search: while head < queue.count {
                let node = queue[head]
                head += 1
                for next in edges[node] ?? [] where members.contains(next) {
                    if next == start {
                        previous[start] = node
                        break search
                    }
                    if previous[next] == nil {
                        previous[next] = node
                        queue.append(next)
                    }
                }
            }
            var path = [start]
            var node = previous[start]!
            while node != start {
                path.append(node)
                node = previous[node]!
            }
            return [start] + path.dropFirst().reversed() + [start]
        }.sorted { $0[0] < $1[0] }
    }

    /// Tarjan's algorithm.
    func stronglyConnectedComponents() -> [[String]] {
        var indexOf: [String: Int] = [:]
        var lowLink: [String: Int] = [:]
        var onStack: Set<String> = []
        var stack: [String] = []
        var counter = 0
        var result: [[String]] = []

        func visit(_ v: String) {
            indexOf[v] = counter
            lowLink[v] = counter
            counter += 1
            stack.append(v)
            onStack.insert(v)
            for w in edges[v] ?? [] {
                if indexOf[w] == nil {
                    visit(w)
                    lowLink[v] = min(lowLink[v]!, lowLink[w]!)
                } else if onStack.contains(w) {
                    lowLink[v] = min(lowLink[v]!, indexOf[w]!)
                }
            }
            if lowLink[v] == indexOf[v] {
                var component: [String] = []
                while let w = stack.popLast() {
                    onStack.remove(w)
                    component.append(w)
                    if w == v { break }
                }
                result.append(component.sorted())
            }
        }
        for n in nodes where indexOf[n] == nil { visit(n) }
        return result
    }
}
